(function () {
  "use strict";
  // Every string from the data goes into the page through textContent or
  // setAttribute, never as HTML source: delivered text cannot become markup.
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var META = JSON.parse(document.getElementById("report-meta").textContent);
  var F = DATA.findings.fields, ROWS = DATA.findings.rows, IX = {};
  F.forEach(function (f, i) { IX[f] = i; });
  var BY_ID = {};
  ROWS.forEach(function (r) { BY_ID[r[IX.exception_id]] = r; });
  var FAMILY = {};
  (DATA.families || []).forEach(function (f) { FAMILY[f.sharer] = f; });
  var PAGE = 100;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === "class") e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function money(s) {
    if (s === null || s === undefined || s === "") return "";
    var str = String(s), neg = str.charAt(0) === "-";
    if (neg) str = str.slice(1);
    var parts = str.split("."), int = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (neg ? "-" : "") + int + "." + ((parts[1] || "") + "00").slice(0, 2);
  }
  function provLabel(p) {
    var n = META.provinces[p];
    return n ? p + " " + n[0] : (p || "");
  }
  function ruleZh(c) { return META.rules[c] ? META.rules[c].zh : ""; }
  function ruleEn(c) { return META.rules[c] ? META.rules[c].en : ""; }

  /* ------------------------------------------------------------ language */
  document.querySelectorAll(".lang button").forEach(function (b) {
    b.addEventListener("click", function () {
      document.body.className = "lang-" + b.getAttribute("data-lang");
      document.querySelectorAll(".lang button").forEach(function (x) { x.classList.toggle("on", x === b); });
    });
  });

  /* ------------------------------------------------------------ explorer */
  var fRule = $("f-rule"), fFam = $("f-family"), fProv = $("f-province"), fSev = $("f-severity"),
      fQ = $("f-q"), fEv = $("f-evidence");
  var ruleCount = {}, provCount = {};
  ROWS.forEach(function (r) {
    ruleCount[r[IX.rule_code]] = (ruleCount[r[IX.rule_code]] || 0) + 1;
    provCount[r[IX.province]] = (provCount[r[IX.province]] || 0) + 1;
  });
  Object.keys(META.rules).concat(Object.keys(ruleCount).filter(function (c) { return !META.rules[c]; }))
    .forEach(function (c) {
      if (!ruleCount[c]) return;
      fRule.appendChild(el("option", { value: c }, c + " " + ruleZh(c) + " " + ruleEn(c) + " (" + ruleCount[c] + ")"));
    });
  Object.keys(META.families).forEach(function (k) {
    fFam.appendChild(el("option", { value: k }, k + " " + META.families[k][0] + " " + META.families[k][1]));
  });
  Object.keys(provCount).sort().forEach(function (p) {
    var n = META.provinces[p];
    fProv.appendChild(el("option", { value: p }, p + (n ? " " + n[0] + " " + n[1] : "") + " (" + provCount[p] + ")"));
  });

  var matches = [], shown = 0;
  function filter() {
    var rule = fRule.value, fam = fFam.value, prov = fProv.value, sev = fSev.value,
        q = fQ.value.trim().toLowerCase(), ev = fEv.checked;
    matches = ROWS.filter(function (r) {
      if (rule && r[IX.rule_code] !== rule) return false;
      if (fam && String(r[IX.rule_code]).charAt(0) !== fam) return false;
      if (prov && r[IX.province] !== prov) return false;
      if (sev && r[IX.severity] !== sev) return false;
      if (ev && !DATA.evidence[r[IX.exception_id]]) return false;
      if (q) {
        var hay = [r[IX.exception_id], r[IX.record_id], r[IX.sharer_psn_no], r[IX.beneficiary_psn_no],
                   r[IX.detail], r[IX.rule_code], r[IX.source_file]].join(" ").toLowerCase();
        if (hay.indexOf(q) < 0) return false;
      }
      return true;
    });
    shown = 0;
    $("explorer-table").tBodies[0].textContent = "";
    $("explorer-count").textContent = matches.length.toLocaleString("en-US");
    $("explorer-of").textContent = "条符合 / " + ROWS.length.toLocaleString("en-US") + " findings match";
    more();
  }
  function findingRow(r) {
    var tr = el("tr", { "data-eid": r[IX.exception_id] });
    var c1 = el("td", { "class": "nw" }); c1.appendChild(el("code", null, r[IX.rule_code])); c1.appendChild(document.createTextNode(" " + ruleZh(r[IX.rule_code])));
    tr.appendChild(c1);
    tr.appendChild(el("td", null, null)).appendChild(el("span", { "class": "sev sev-" + String(r[IX.severity]).toLowerCase() }, r[IX.severity]));
    tr.appendChild(el("td", null, provLabel(r[IX.province])));
    tr.appendChild(el("td", { "class": "mono" }, r[IX.record_id]));
    tr.appendChild(el("td", { "class": "mono" }, r[IX.sharer_psn_no] || ""));
    tr.appendChild(el("td", { "class": "mono" }, r[IX.beneficiary_psn_no] || ""));
    tr.appendChild(el("td", { "class": "num" }, money(r[IX.amount])));
    var d = String(r[IX.detail] || "");
    tr.appendChild(el("td", { "class": "detail", title: d }, d.length > 180 ? d.slice(0, 180) + "…" : d));
    var e = el("td");
    if (DATA.evidence[r[IX.exception_id]]) e.appendChild(el("span", { "class": "ev-dot", title: "有证据 evidence" }));
    tr.appendChild(e);
    return tr;
  }
  function more() {
    var body = $("explorer-table").tBodies[0], end = Math.min(matches.length, shown + PAGE);
    for (var i = shown; i < end; i++) body.appendChild(findingRow(matches[i]));
    shown = end;
    $("explorer-more").hidden = shown >= matches.length;
  }
  [fRule, fFam, fProv, fSev, fEv].forEach(function (x) { x.addEventListener("change", filter); });
  var qTimer = null;
  fQ.addEventListener("input", function () { clearTimeout(qTimer); qTimer = setTimeout(filter, 150); });
  $("explorer-more").addEventListener("click", more);
  $("f-reset").addEventListener("click", function () {
    fRule.value = fFam.value = fProv.value = fSev.value = fQ.value = ""; fEv.checked = false; filter();
  });
  function setFilter(rule, prov, q) {
    fRule.value = rule || ""; fProv.value = prov || ""; fFam.value = ""; fSev.value = "";
    fQ.value = q || ""; fEv.checked = false; filter();
    $("explorer").scrollIntoView();
  }
  document.querySelectorAll("svg g.cell").forEach(function (g) {
    g.addEventListener("click", function () { setFilter(g.getAttribute("data-rule"), g.getAttribute("data-province")); });
  });
  document.querySelectorAll("svg g.bar, table.rules tr.rule-row:not(.zero)").forEach(function (g) {
    g.addEventListener("click", function () { setFilter(g.getAttribute("data-rule"), ""); });
  });
  document.addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("table.clickable tbody tr[data-eid]") : null;
    if (tr) openFinding(tr.getAttribute("data-eid"));
  });

  /* ------------------------------------------------------------ drawer */
  function kv(pairs) {
    var dl = el("dl", { "class": "kv" });
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      dl.appendChild(el("dt", null, p[0]));
      var dd = el("dd", null, p[1]);
      if (p[2]) dd.className = p[2];
      dl.appendChild(dd);
    });
    return dl;
  }
  function dataTable(t) {
    var wrap = el("div", { "class": "tablewrap" });
    var table = el("table"), thead = el("thead"), hr = el("tr");
    t.columns.forEach(function (c) { hr.appendChild(el("th", null, c)); });
    thead.appendChild(hr); table.appendChild(thead);
    var tb = el("tbody");
    t.rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v, i) {
        var c = t.columns[i], numeric = /amount|balance|remaining|wallet_pay|burden|sum|quota_in|from_this_sharer|^sent$|^spent$/.test(c) && v !== null && /^-?\d+(\.\d+)?$/.test(String(v));
        tr.appendChild(el("td", numeric ? { "class": "num" } : null, v === null ? "" : (numeric ? money(v) : v)));
      });
      tb.appendChild(tr);
    });
    table.appendChild(tb); wrap.appendChild(table);
    return wrap;
  }
  function tableBlock(parent, t) {
    var h = el("h4", null, t.zh + " "); h.appendChild(el("span", { "class": "en" }, t.en));
    parent.appendChild(h);
    parent.appendChild(dataTable(t));
    if (t.more) parent.appendChild(el("p", { "class": "muted small" }, "仅显示部分行 Only the first rows are shown."));
  }
  var SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function shortPsn(p) { return p ? "…" + String(p).slice(-6) : "?"; }
  function arrowDefs(svg) {
    var defs = svgEl("defs"), m = svgEl("marker", { id: "arr", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    m.appendChild(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7f8c8d" }));
    var m2 = svgEl("marker", { id: "arr2", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    m2.appendChild(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#c0392b" }));
    defs.appendChild(m); defs.appendChild(m2); svg.appendChild(defs);
  }
  // nodes: [{id, label, sub, x, y, focus}], edges: [{from, to, label, this}]
  function drawGraph(nodes, edges, w, h) {
    var svg = svgEl("svg", { "class": "graph", width: w, height: h, viewBox: "0 0 " + w + " " + h });
    arrowDefs(svg);
    var pos = {}, NW = 128, NH = 34;
    nodes.forEach(function (n) { pos[n.id] = n; });
    edges.forEach(function (e, k) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) return;
      var dx = b.x - a.x, dy = b.y - a.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
      // leave the node boxes: clip the line at the rectangle border
      function clip(n, sx, sy) {
        var tx = Math.abs(sx) > 0 ? (NW / 2 + 4) / Math.abs(sx) : Infinity, ty = Math.abs(sy) > 0 ? (NH / 2 + 4) / Math.abs(sy) : Infinity;
        var t = Math.min(tx, ty);
        return [n.x + sx * t, n.y + sy * t];
      }
      var ux = dx / len, uy = dy / len, p1 = clip(a, ux, uy), p2 = clip(b, -ux, -uy);
      var bend = e.bend || 0, mx = (p1[0] + p2[0]) / 2 - uy * bend, my = (p1[1] + p2[1]) / 2 + ux * bend;
      svg.appendChild(svgEl("path", { d: "M" + p1[0] + "," + p1[1] + " Q" + mx + "," + my + " " + p2[0] + "," + p2[1],
        "class": "edge" + (e["this"] ? " this" : ""), "marker-end": e["this"] ? "url(#arr2)" : "url(#arr)" }));
      if (e.label) svg.appendChild(svgEl("text", { x: mx, y: my - 4, "text-anchor": "middle", "class": "elbl" }, e.label));
    });
    nodes.forEach(function (n) {
      var g = svgEl("g", { "class": "node" + (n.focus ? " focus" : "") });
      g.appendChild(svgEl("title", {}, n.title || n.id));
      g.appendChild(svgEl("rect", { x: n.x - NW / 2, y: n.y - NH / 2, width: NW, height: NH, rx: 6 }));
      g.appendChild(svgEl("text", { x: n.x, y: n.y - 2, "text-anchor": "middle" }, n.label));
      if (n.sub) g.appendChild(svgEl("text", { x: n.x, y: n.y + 11, "text-anchor": "middle" }, n.sub));
      svg.appendChild(g);
    });
    return svg;
  }
  function chainGraph(ch) {
    var nodes = [], edges = [], n = ch.nodes.length;
    if (ch.kind === "cycle") {
      var R = Math.max(120, 45 * n), cx = R + 80, cy = R + 30;
      ch.nodes.forEach(function (p, i) {
        var a = -Math.PI / 2 + 2 * Math.PI * i / n;
        nodes.push({ id: p, label: shortPsn(p), sub: provLabel(String(p).slice(0, 2)), title: p, x: cx + R * Math.cos(a), y: cy + R * Math.sin(a) });
      });
      ch.edges.forEach(function (e) {
        edges.push({ from: e.from, to: e.to, "this": e["this"], bend: n === 2 ? 18 : 0,
          label: e.count ? money(e.amount) + (e.count > 1 ? " (" + e.count + "笔)" : "") : "?" });
      });
      return drawGraph(nodes, edges, 2 * R + 160, 2 * R + 60);
    }
    // forwarding: upstream column -> sharer -> beneficiary
    var ups = ch.nodes.slice(0, Math.max(0, n - 2)), sh = ch.nodes[n - 2], be = ch.nodes[n - 1];
    var h = Math.max(90, ups.length * 46 + 20);
    ups.forEach(function (p, i) { nodes.push({ id: p, label: shortPsn(p), sub: provLabel(String(p).slice(0, 2)), title: p, x: 80, y: 30 + i * 46 }); });
    nodes.push({ id: sh, label: shortPsn(sh), sub: "共济人 sharer", title: sh, x: 300, y: h / 2, focus: true });
    nodes.push({ id: be, label: shortPsn(be), sub: "被共济人 beneficiary", title: be, x: 520, y: h / 2 });
    ch.edges.forEach(function (e) {
      edges.push({ from: e.from, to: e.to, "this": e["this"], label: e.count ? money(e.amount) : "" });
    });
    return drawGraph(nodes, edges, 600, h + 10);
  }
  function openFinding(eid) {
    var r = BY_ID[eid];
    if (!r) return;
    document.querySelectorAll("tr.sel").forEach(function (x) { x.classList.remove("sel"); });
    document.querySelectorAll('tr[data-eid="' + eid.replace(/[^0-9a-zA-Z]/g, "") + '"]').forEach(function (x) { x.classList.add("sel"); });
    var code = r[IX.rule_code], body = $("drawer-body");
    $("drawer-title").textContent = code + " " + ruleZh(code) + " · " + ruleEn(code);
    body.textContent = "";
    body.appendChild(kv([
      ["异常编号 Exception ID", r[IX.exception_id], "mono"],
      ["规则 Rule", code + " " + (META.rules[code] ? META.rules[code].name : "")],
      ["级别 Severity", r[IX.severity]],
      ["省份 Province", provLabel(r[IX.province])],
      ["数据集 Dataset", r[IX.dataset]],
      ["记录 Record", r[IX.record_id], "mono"],
      ["共济人 Sharer", r[IX.sharer_psn_no], "mono"],
      ["被共济人 Beneficiary", r[IX.beneficiary_psn_no], "mono"],
      ["金额 Amount", money(r[IX.amount])],
      ["来源 Source", r[IX.source_file] ? r[IX.source_file] + (r[IX.source_row] !== null ? " : " + r[IX.source_row] : "") : ""]
    ]));
    body.appendChild(el("h4", null, "说明 Detail"));
    body.appendChild(el("div", { "class": "detailbox" }, r[IX.detail]));
    var ev = DATA.evidence[eid];
    if (ev) {
      if (ev.limits && ev.limits.length) {
        body.appendChild(el("h4", null, "违反的限额 Limit broken"));
        ev.limits.forEach(function (l) {
          body.appendChild(el("div", { "class": "limit" }, l.zh + " " + l.en + ": " + l.value + "  (政策 policy " + l.policy + ")"));
        });
      }
      if (ev.chain) {
        body.appendChild(el("h4", null, ev.chain.kind === "cycle" ? "循环 Cycle (红色为本笔 red: this transfer)" : "转手链条 Forwarding chain (红色为本笔 red: this transfer)"));
        body.appendChild(chainGraph(ev.chain));
        body.appendChild(el("p", { "class": "small muted" }, "窗口 window " + ev.chain.window_from + " .. " + DATA.business_date + " · " + ev.chain.nodes.join(" → ")));
      }
      ev.tables.forEach(function (t) { tableBlock(body, t); });
    } else {
      body.appendChild(el("p", { "class": "muted" }, "本页仅为每条规则金额最大的 " + DATA.config.evidence_per_rule + " 条和最大案件附证据。Evidence is embedded for the top " + DATA.config.evidence_per_rule + " findings of each rule and the largest cases; the record is at the source shown above."));
    }
    var fam = FAMILY[r[IX.sharer_psn_no]] ? r[IX.sharer_psn_no] : (FAMILY[r[IX.beneficiary_psn_no]] ? r[IX.beneficiary_psn_no] : null);
    if (fam) {
      var b = el("button", { type: "button", "class": "linkbtn" }, "家庭视图 Family view of " + fam);
      b.addEventListener("click", function () { showFamily(fam); closeDrawer(); $("family").scrollIntoView(); });
      body.appendChild(el("p")).appendChild(b);
    }
    var d = $("drawer"); d.hidden = false; d.scrollTop = 0;
    if (history.replaceState) history.replaceState(null, "", "#finding=" + eid);
  }
  function closeDrawer() { $("drawer").hidden = true; }
  $("drawer-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") closeDrawer(); });

  /* ------------------------------------------------------------ day over day */
  var DOD = DATA.day_over_day || {};
  function showDod(kind) {
    document.querySelectorAll("button.dod").forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-dod") === kind); });
    var box = $("dod-list"); box.textContent = "";
    var table = el("table", { "class": "findings clickable small" }), thead = el("thead"), tr = el("tr");
    ["规则 Rule", "省份 Province", "记录 Record", "共济人 Sharer", "被共济人 Beneficiary", "金额 Amount", "说明 Detail"].forEach(function (h) { tr.appendChild(el("th", null, h)); });
    thead.appendChild(tr); table.appendChild(thead);
    var tb = el("tbody");
    if (kind === "resolved") {
      (DOD.resolved || []).forEach(function (x) {
        var row = el("tr");
        [x.rule_code + " " + ruleZh(x.rule_code), provLabel(x.province), x.record_id, x.sharer_psn_no || "", x.beneficiary_psn_no || "", money(x.amount), x.detail]
          .forEach(function (v, i) { row.appendChild(el("td", i === 5 ? { "class": "num" } : null, v)); });
        tb.appendChild(row);
      });
    } else {
      (DOD[kind] || []).forEach(function (eid) {
        var r = BY_ID[eid]; if (!r) return;
        var row = el("tr", { "data-eid": eid });
        [r[IX.rule_code] + " " + ruleZh(r[IX.rule_code]), provLabel(r[IX.province]), r[IX.record_id], r[IX.sharer_psn_no] || "", r[IX.beneficiary_psn_no] || "", money(r[IX.amount]), r[IX.detail]]
          .forEach(function (v, i) { row.appendChild(el("td", i === 5 ? { "class": "num" } : null, v)); });
        tb.appendChild(row);
      });
    }
    table.appendChild(tb); box.appendChild(table);
    if (DOD.truncated) box.appendChild(el("p", { "class": "muted small" }, "列表已截断 Lists are truncated to " + DATA.config.day_over_day_rows + " rows."));
  }
  document.querySelectorAll("button.dod").forEach(function (b) {
    b.addEventListener("click", function () { showDod(b.getAttribute("data-dod")); });
  });

  /* ------------------------------------------------------------ family view */
  var famSel = $("fam-select");
  (DATA.families || []).forEach(function (f) {
    famSel.appendChild(el("option", { value: f.sharer }, f.sharer + " · " + provLabel(f.province) + " · " + f.finding_count + " 条异常 findings · " + money(f.finding_amount)));
  });
  function familyGraph(f) {
    var nodes = [], edges = [], ups = f.received_from || [], bens = f.beneficiaries || [];
    var rows = Math.max(ups.length, bens.length, 1), h = rows * 48 + 20;
    ups.forEach(function (u, i) {
      nodes.push({ id: "u" + u.psn_no, label: shortPsn(u.psn_no), sub: provLabel(String(u.psn_no).slice(0, 2)), title: u.psn_no, x: 80, y: 34 + i * 48 });
      edges.push({ from: "u" + u.psn_no, to: "s", label: money(u.amount) });
    });
    nodes.push({ id: "s", label: shortPsn(f.sharer), sub: "共济人 sharer", title: f.sharer, x: 320, y: h / 2, focus: true });
    bens.forEach(function (b, i) {
      nodes.push({ id: "b" + b.psn_no, label: shortPsn(b.psn_no), sub: provLabel(String(b.psn_no).slice(0, 2)), title: b.psn_no, x: 560, y: 34 + i * 48 });
      edges.push({ from: "s", to: "b" + b.psn_no, label: b.sent_count ? money(b.sent) : "" });
    });
    return drawGraph(nodes, edges, 650, h + 10);
  }
  function showFamily(s) {
    var f = FAMILY[s], box = $("fam-view");
    box.textContent = "";
    if (!f) { box.appendChild(el("p", { "class": "muted" }, "无家庭视图 No family in this report.")); return; }
    famSel.value = s;
    var grid = el("div", { "class": "fam-grid" }), left = el("div"), right = el("div");
    left.appendChild(el("h4", null, "资金流向 Money flow (窗口 window)"));
    left.appendChild(familyGraph(f));
    left.appendChild(el("p", { "class": "small muted" }, "左:向本人转入的人(再共济来源) left: who sent quota to the sharer; 右:被共济人 right: beneficiaries."));
    var bt = { key: "b", zh: "被共济人汇总", en: "Beneficiaries", columns: ["psn_no", "sent_count", "sent", "spent", "remaining"],
      rows: f.beneficiaries.map(function (b) { return [b.psn_no, b.sent_count, b.sent, b.spent, b.remaining]; }) };
    tableBlock(right, bt);
    right.appendChild(el("h4", null, "相关异常 Findings involving the sharer (" + f.involved.length + ")"));
    var ft = el("table", { "class": "findings clickable small" }), tb = el("tbody");
    f.involved.slice(0, 40).forEach(function (eid) {
      var r = BY_ID[eid]; if (!r) return;
      var row = el("tr", { "data-eid": eid });
      row.appendChild(el("td", null, r[IX.rule_code] + " " + ruleZh(r[IX.rule_code])));
      row.appendChild(el("td", { "class": "mono" }, r[IX.record_id]));
      row.appendChild(el("td", { "class": "num" }, money(r[IX.amount])));
      tb.appendChild(row);
    });
    ft.appendChild(tb); right.appendChild(ft);
    grid.appendChild(left); grid.appendChild(right); box.appendChild(grid);
    f.tables.forEach(function (t) { tableBlock(box, t); });
  }
  famSel.addEventListener("change", function () { showFamily(famSel.value); });

  /* ------------------------------------------------------------ start */
  filter();
  if ((DATA.families || []).length) showFamily(DATA.families[0].sharer);
  else $("fam-view").appendChild(el("p", { "class": "muted" }, "无涉及共济人的异常 No finding names a sharer."));
  if (DOD.previous_date) showDod("new");
  var m = /#finding=([0-9a-f]+)/.exec(location.hash);
  if (m) openFinding(m[1]);
  document.body.setAttribute("data-ready", "1");
})();
