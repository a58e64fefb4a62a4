"""Errors a user causes and can fix: a bad params key, a missing or damaged file, a budget that
cannot be met, a run that diverged. The CLI ends each with one line and exit status 2."""


class UserError(Exception):
    """Base of the errors the CLI reports as one line naming what is wrong and where."""


class FileFormatError(UserError, ValueError):
    """A file alphaprune wrote (a model, a checkpoint, prepared data) is missing, unreadable,
    holds pickled code, or is of another format or version (see `torchfiles.safe_load`)."""


class UnknownNameError(UserError, ValueError):
    """A name (of a model, data source, branch kind, schedule, loss) that is not registered;
    the message lists the known ones (see `registry.Registry`)."""
