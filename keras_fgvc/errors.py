"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Base for mistakes in input (config, data files, paths); never for bugs."""


class DataError(UserError):
    """A data file is missing or malformed; the message names the file, row or column."""


def plain(value):
    """``value`` as the user wrote it, for a message: NumPy scalars as Python values and whole
    floats as integers (a CSV's ``7`` is read as 7.0 in a column with gaps; show ``7``, not
    ``np.float64(7.0)``)."""
    if hasattr(value, "item"):
        value = value.item()
    return int(value) if isinstance(value, float) and value.is_integer() else value
