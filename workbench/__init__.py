"""The auditors' workbench (`recon audit`): every finding of the published reports
becomes part of a case that someone owns, decides and closes.

    settings  RECON_AUDIT_* settings and their defaults
    store     the workbench's own SQLite database (WAL): cases, sightings, events, users
    keys      how a finding is keyed to a case across dates
    ingest    reads <out>/<YYYY-MM-DD>/exceptions.parquet, summary.json, report.html
    auth      users, password hashing, sessions, CSRF, lockout
    cases     the actions on a case (assign, comment, decide, reopen) and who may do them
    exports   decided cases of a period as xlsx and CSV
    app       the FastAPI application (pages and JSON API)
    cli       `recon audit` and `recon audit user add`

It reads only what the runs publish under <out>, never the warehouse.
"""
