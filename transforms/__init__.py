"""The rules, the ledger and clearing: set-based SQL and polars over DuckDB.

Nothing here decides where files are: every function takes a DuckDB connection
whose warehouse tables (contracts/warehouse.sql) hold the loaded data, and a
RunContext naming the business date and the policy in force.
"""
