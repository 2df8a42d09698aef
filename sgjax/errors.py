"""Errors for bad user input: the CLI prints them as one line and exits with status 2."""


class UserError(ValueError):
    """Bad input (config, file, run directory); the message says what and where."""


class DataError(UserError):
    """A malformed data file or unknown word; the message names the file and line."""


class CheckpointError(UserError):
    """A missing or corrupt checkpoint, or a run directory that does not match."""
