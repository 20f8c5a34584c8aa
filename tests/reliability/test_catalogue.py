"""docs/RELIABILITY.md stays true: every test it names exists, and every test in tests/reliability
is named there (``pytest -m reliability`` runs them all, wherever they live)."""

import ast
import os

from tests.conftest import reliability_cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def functions_of(path: str) -> set[str]:
    with open(os.path.join(ROOT, path)) as source:
        tree = ast.parse(source.read())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_the_document_names_exists():
    cases = reliability_cases()
    assert len(cases) > 50
    missing = sorted(case for case in cases if case.split("::")[1] not in functions_of(case.split("::")[0]))
    assert missing == []


def test_every_reliability_test_is_in_the_document():
    cases = reliability_cases()
    folder = os.path.join("tests", "reliability")
    unlisted = sorted(f"{folder}/{name}::{test}" for name in os.listdir(os.path.join(ROOT, folder))
                      if name.startswith("test_") and name.endswith(".py")
                      for test in functions_of(f"{folder}/{name}") if f"{folder}/{name}::{test}" not in cases)
    assert unlisted == []
