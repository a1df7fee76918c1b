-- The warehouse contract (DuckDB). Every table is partitioned by business_date:
-- a run of D deletes and rewrites exactly D's rows, inside one transaction.
-- Money is DECIMAL(18,2). Timestamps are TIMESTAMP holding Asia/Shanghai wall
-- time (UTC+08:00, no DST), converted from the delivered offset at intake.
-- Loaded rows carry where they came from: file_province (the PP folder),
-- source_file ('<D>/<PP>/<file name>') and source_row (1-based data row).

CREATE TABLE IF NOT EXISTS persons (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL,
    psn_no VARCHAR NOT NULL, certno VARCHAR NOT NULL, insutype VARCHAR NOT NULL,
    insu_status VARCHAR NOT NULL, insu_admdvs VARCHAR NOT NULL, as_of DATE NOT NULL,
    birth_date DATE NOT NULL,            -- from certno characters 7-14
    sex VARCHAR NOT NULL,                -- 'M' | 'F' from certno character 17
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS relationships (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL, relation_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL,
    sharer_psn_no VARCHAR NOT NULL, beneficiary_psn_no VARCHAR NOT NULL,
    beneficiary_province VARCHAR NOT NULL, relation_code VARCHAR NOT NULL,
    commitment_signed BOOLEAN, channel VARCHAR NOT NULL, event_time TIMESTAMP NOT NULL,
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS transfers (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL,
    transfer_id VARCHAR NOT NULL, side VARCHAR NOT NULL, relation_id VARCHAR NOT NULL,
    sharer_psn_no VARCHAR NOT NULL, beneficiary_psn_no VARCHAR NOT NULL,
    sharer_province VARCHAR NOT NULL, beneficiary_province VARCHAR NOT NULL,
    amount DECIMAL(18,2) NOT NULL, status VARCHAR NOT NULL, transfer_time TIMESTAMP NOT NULL,
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS settlements (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL,
    setl_id VARCHAR NOT NULL, psn_no VARCHAR NOT NULL, status VARCHAR NOT NULL,
    orig_setl_id VARCHAR, expense_type VARCHAR NOT NULL, fixmedins_code VARCHAR,
    total_amount DECIMAL(18,2) NOT NULL, personal_burden DECIMAL(18,2) NOT NULL,
    wallet_pay DECIMAL(18,2) NOT NULL, setl_time TIMESTAMP NOT NULL,
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS balances (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL,
    psn_no VARCHAR NOT NULL, account VARCHAR NOT NULL,
    sharer_psn_no VARCHAR, sharer_province VARCHAR,
    opening_balance DECIMAL(18,2) NOT NULL, closing_balance DECIMAL(18,2) NOT NULL,
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL
);

-- The person registry: for every psn_no of persons, the date of its latest record
-- over all processed dates, and the dates folded into it. F06's "known on D" reads
-- the record of that date instead of the whole persons history (transforms/context.py,
-- docs/performance.md); every run maintains it inside its own transaction.
CREATE TABLE IF NOT EXISTS person_latest (psn_no VARCHAR NOT NULL, business_date DATE NOT NULL);
CREATE TABLE IF NOT EXISTS person_latest_dates (business_date DATE NOT NULL);

-- Reference data as loaded for D (the reference/ folder may change between runs).
CREATE TABLE IF NOT EXISTS regions (
    business_date DATE NOT NULL, admdvs VARCHAR NOT NULL, province VARCHAR NOT NULL,
    name VARCHAR, wallet_live_from DATE
);
CREATE TABLE IF NOT EXISTS institutions (
    business_date DATE NOT NULL, fixmedins_code VARCHAR NOT NULL, fixmedins_type VARCHAR NOT NULL,
    admdvs VARCHAR NOT NULL, designated_from DATE NOT NULL, designated_to DATE
);

-- Rows that took no further part (F03 files are not here: they are rejected whole).
CREATE TABLE IF NOT EXISTS quarantine (
    business_date DATE NOT NULL, file_province VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL, source_row INTEGER NOT NULL,
    record_id VARCHAR NOT NULL, rule_code VARCHAR NOT NULL,   -- F04 | F05
    reasons VARCHAR NOT NULL, raw VARCHAR                      -- raw: the row as JSON text
);

-- One row per data file named in a manifest (and per expected file of a
-- delivered province). rows_read = rows_loaded + rows_quarantined always.
CREATE TABLE IF NOT EXISTS file_loads (
    business_date DATE NOT NULL, province VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL, sha256 VARCHAR, encoding VARCHAR,
    rows_read BIGINT NOT NULL, rows_loaded BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL,
    rejected BOOLEAN NOT NULL, reject_rule VARCHAR, reject_reason VARCHAR
);

-- Validity of every ESTABLISH event (rules.md §2: none of S01-S04, S06, S07, F06)
-- and effect of every DISSOLVE event (§6: effective unless S21).
CREATE TABLE IF NOT EXISTS relation_events (
    business_date DATE NOT NULL, event_id VARCHAR NOT NULL, relation_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL, sharer_psn_no VARCHAR NOT NULL, beneficiary_psn_no VARCHAR NOT NULL,
    event_time TIMESTAMP NOT NULL,
    valid BOOLEAN NOT NULL       -- ESTABLISH: valid; DISSOLVE: effective (not S21)
);

-- Every finding of D, already in the exceptions report shape.
CREATE TABLE IF NOT EXISTS findings (
    exception_id VARCHAR NOT NULL, business_date DATE NOT NULL, rule_code VARCHAR NOT NULL,
    rule_name VARCHAR NOT NULL, severity VARCHAR NOT NULL, province VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL, record_id VARCHAR NOT NULL,
    sharer_psn_no VARCHAR, beneficiary_psn_no VARCHAR, amount DECIMAL(18,2),
    detail VARCHAR NOT NULL, source_file VARCHAR, source_row INTEGER
);

-- The quota ledger (rules.md §6). lots holds the CLOSING state after D of every
-- open lot that holds quota, and of every lot that emptied on D (remaining 0); an
-- emptied lot is not carried further but stays open (dormant: a refund can refill
-- it, a dissolution closes it; transforms/ledger.py _dormant). A lot closed by a
-- dissolution is dropped, so a refund finding no open lot returns its quota to
-- the sharer. D+1 opens from D's rows; genesis opens from balances.
CREATE TABLE IF NOT EXISTS lots (
    business_date DATE NOT NULL,           -- the date whose closing state this is
    lot_id VARCHAR NOT NULL,               -- transfer_id, or 'G:<beneficiary>:<sharer>' at genesis
    beneficiary_psn_no VARCHAR NOT NULL, beneficiary_province VARCHAR NOT NULL,
    sharer_psn_no VARCHAR NOT NULL, payer_province VARCHAR NOT NULL,
    genesis BOOLEAN NOT NULL,              -- lot order: genesis lots by sharer_psn_no,
    transfer_time TIMESTAMP,               -- then by (transfer_time, transfer_id)
    transfer_id VARCHAR,
    original_amount DECIMAL(18,2) NOT NULL, remaining DECIMAL(18,2) NOT NULL
);

-- Every lot row of D at 0 again, in a table of its own: the emptied lots a later date
-- may still refill or close (dormant) are looked up here, in a table that grows by
-- the lots that empty, not by every open lot of every date (issue 12).
CREATE TABLE IF NOT EXISTS emptied_lots (
    business_date DATE NOT NULL,           -- the date the lot (last) emptied
    lot_id VARCHAR NOT NULL,
    beneficiary_psn_no VARCHAR NOT NULL, beneficiary_province VARCHAR NOT NULL,
    sharer_psn_no VARCHAR NOT NULL, payer_province VARCHAR NOT NULL,
    genesis BOOLEAN NOT NULL, transfer_time TIMESTAMP, transfer_id VARCHAR,
    original_amount DECIMAL(18,2) NOT NULL, remaining DECIMAL(18,2) NOT NULL
);

-- A settlement is (business_date, province, setl_id): setl_id is unique within a file
-- only (inbox.md), so two provinces may deliver the same setl_id on one date.

-- What each settled NORMAL settlement took from which lot (seq: consumption order).
CREATE TABLE IF NOT EXISTS consumptions (
    business_date DATE NOT NULL, setl_id VARCHAR NOT NULL, lot_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL, amount DECIMAL(18,2) NOT NULL, payer_province VARCHAR NOT NULL,
    province VARCHAR                     -- the settlement's (its file's) province
);

-- What each valid refund gave back, lot by lot (to_sharer: the lot was closed).
CREATE TABLE IF NOT EXISTS refund_returns (
    business_date DATE NOT NULL, setl_id VARCHAR NOT NULL, orig_setl_id VARCHAR NOT NULL,
    lot_id VARCHAR NOT NULL, amount DECIMAL(18,2) NOT NULL, payer_province VARCHAR NOT NULL,
    to_sharer BOOLEAN NOT NULL,
    orig_business_date DATE, orig_province VARCHAR   -- the original settlement it reverses
);

-- Outcome of every loaded settlement of D.
CREATE TABLE IF NOT EXISTS settlement_outcomes (
    business_date DATE NOT NULL, setl_id VARCHAR NOT NULL, psn_no VARCHAR NOT NULL,
    province VARCHAR NOT NULL, status VARCHAR NOT NULL, expense_type VARCHAR NOT NULL,
    orig_setl_id VARCHAR, wallet_pay DECIMAL(18,2) NOT NULL,
    outcome VARCHAR NOT NULL     -- SETTLED | HELD (NORMAL); REFUNDED | HELD (REFUND)
);

-- Quota returned to sharers by dissolutions (and by refunds to closed lots).
CREATE TABLE IF NOT EXISTS dissolution_returns (
    business_date DATE NOT NULL, event_id VARCHAR NOT NULL, lot_id VARCHAR NOT NULL,
    beneficiary_psn_no VARCHAR NOT NULL, sharer_psn_no VARCHAR NOT NULL,
    amount DECIMAL(18,2) NOT NULL
);

-- Clearing flows (rules.md §8): payer = lot's payer province, payee = settlement's.
CREATE TABLE IF NOT EXISTS clearing_flows (
    business_date DATE NOT NULL, setl_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,  -- SETTLE | REFUND
    payer_province VARCHAR NOT NULL, payee_province VARCHAR NOT NULL,
    expense_type VARCHAR NOT NULL, amount DECIMAL(18,2) NOT NULL
);

-- `recon archive --before B` (flows/archive.py): one row per archive; the dates before the
-- latest B no longer re-run (transforms/archive.py).
CREATE TABLE IF NOT EXISTS archives (
    archived_before DATE NOT NULL, archived_at TIMESTAMP NOT NULL, rows_moved BIGINT NOT NULL
);

-- Run bookkeeping (flows/): one row per processed date, replaced by each run.
CREATE TABLE IF NOT EXISTS runs (
    business_date DATE PRIMARY KEY, run_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL,
    input_digest VARCHAR NOT NULL, summary_json VARCHAR NOT NULL
);

-- The status file's copy of each run's summary (summary.json without the HEAVY fields,
-- scrubbed, as compact JSON text), made once per run by the first status file written
-- after it: later writes join these texts instead of parsing every summary ever
-- recorded (flows/warehouse.py write_status_file). A copy whose run is no longer in
-- runs (the date was re-run) is dropped.
CREATE TABLE IF NOT EXISTS run_status_copies (
    run_id VARCHAR PRIMARY KEY, summary_text VARCHAR NOT NULL
);

-- Identity of the warehouse, made when it is created (copies keep it): <out>/.recon-warehouse
-- names it, so that two warehouses never publish into one <out> (flows/warehouse.py).
CREATE TABLE IF NOT EXISTS warehouse_identity (
    warehouse_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL
);

-- The <out> this warehouse publishes into (the reverse of <out>/.recon-warehouse): a date
-- re-run into a second <out> would leave the first one's later dates unmarked STALE.
CREATE TABLE IF NOT EXISTS reports_folder (
    path VARCHAR NOT NULL, bound_at TIMESTAMP NOT NULL
);
