"""Reading a source's CSV file with one clear error line per problem (file, parse, columns)."""

import os

import pandas as pd

from keras_fgvc.errors import DataError


def read_csv(csv_path: str, required, expected: str) -> pd.DataFrame:
    """The frame of ``csv_path``; DataError naming the file when it is missing (``expected`` says
    what the layout wants), does not parse, or lacks a ``required`` column."""
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: file not found ({expected})")
    try:
        table = pd.read_csv(csv_path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{csv_path}: cannot parse CSV: {str(error).splitlines()[0]}") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}")
    return table


def check_unique(table: pd.DataFrame, column: str, csv_path: str) -> None:
    """DataError naming the first row whose ``column`` repeats an earlier row's: a duplicated image
    would be counted twice and could land in two splits at once (train and val)."""
    repeated = table[column].duplicated()
    if repeated.any():
        row = int(repeated.to_numpy().argmax())
        value = table[column].iloc[row]
        first = int((table[column] == value).to_numpy().argmax())
        raise DataError(f"{csv_path}: row {row + 2}: duplicate {column} {str(value)!r} (first at row {first + 2})")
