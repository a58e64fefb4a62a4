"""Errors a user causes and can fix: a bad params key, a missing or damaged file, a budget that
cannot be met, a run that diverged. The CLI ends each with one line and exit status 2."""


class UserError(Exception):
    """Base of the errors the CLI reports as one line naming what is wrong and where."""
