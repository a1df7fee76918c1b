"""Errors that end a run with exit code 2 and one clear sentence (outputs.md)."""


class InputError(Exception):
    """Input that cannot be processed at all: no such date folder, previous date
    not processed, unreadable reference data, a path escaping the inbox.
    str(error) is the one sentence shown to the operator."""


class RunLockedError(InputError):
    """Another run holds the warehouse."""
