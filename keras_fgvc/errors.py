"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Base for mistakes in input (config, data files, paths); never for bugs."""


class DataError(UserError):
    """A data file is missing or malformed; the message names the file, row or column."""
