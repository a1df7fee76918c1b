"""Contracts: the inbox schemas, the report schemas, the code lists and the policy."""
