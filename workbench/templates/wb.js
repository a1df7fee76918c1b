// Select every case of the list for a bulk action (the only script of the workbench).
(function () {
  var all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll("input[name=case_id]").forEach(function (b) { b.checked = all.checked; });
  });
})();
