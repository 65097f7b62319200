"""Errors shared across tfzoo's packages (so that none imports another just for them)."""


class DataError(ValueError):
    """Unreadable or inconsistent data (with the offending path or value in the message)."""
