"""Imports live at the top of each module. An import inside a function is a deliberate
on-demand load (a driver only one database needs, a library only one setting uses), and a
comment on its line or the line above says why. The command line (``poller/cli``, which
loads each command on demand) and ``poller/sandbox`` keep their own rules."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import poller

PACKAGE = Path(poller.__file__).parent
EXEMPT = ("cli", "sandbox")


def _comment_lines(source: str) -> set[int]:
    """The lines that carry a comment (a ``#`` inside a string does not count)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def uncommented_imports(source: str) -> list[int]:
    """The lines of the imports inside function bodies that no comment explains: none on
    the import's lines nor on the line above. Consecutive imports share the comment above
    the first."""
    comments = _comment_lines(source)
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.extend(n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    explained: set[int] = set()
    for node in sorted(set(found), key=lambda n: n.lineno):
        end = node.end_lineno or node.lineno
        lines = set(range(node.lineno - 1, end + 1))
        if lines & comments or node.lineno - 1 in explained:
            explained.update(range(node.lineno, end + 1))
    return sorted(n.lineno for n in set(found) if n.lineno not in explained)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.relative_to(PACKAGE).parts[0] not in EXEMPT)


def test_every_import_inside_a_function_says_why_it_is_there() -> None:
    unexplained = [f"{path.relative_to(PACKAGE.parent)}:{line}"
                   for path in _modules()
                   for line in uncommented_imports(path.read_text(encoding="utf-8"))]
    assert unexplained == [], (
        "imports inside functions without a comment saying why they load on demand; "
        f"move them to the top of the module, or say why: {unexplained}")


def test_the_walk_covers_the_package_but_not_the_command_line() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"ledger/__init__.py", "ledger/sql/engine.py", "vendors/__init__.py",
            "compose/__init__.py", "__init__.py"} <= names
    assert not any(n.startswith(("cli/", "sandbox/")) for n in names)


SAMPLE = '''\
import os


def top_level_is_fine():
    return os.sep


def hidden():
    import json
    return json


def said_above():
    # On demand: only one database needs it.
    import sqlite3
    from decimal import Decimal
    return sqlite3, Decimal


def said_inline():
    import csv  # on demand: only the export writes CSV
    return csv


def said_too_far_above():
    # A comment two lines up does not explain the import.

    import json
    return json


def a_hash_in_a_string_is_no_comment():
    text = "# not a comment"
    import json
    return text, json


class Box:
    def method(self):
        def inner():
            import json
            return json
        return inner
'''


def test_an_import_in_a_function_needs_a_comment_on_its_line_or_the_one_above() -> None:
    lines = SAMPLE.splitlines()
    flagged = [lines[n - 1].strip() for n in uncommented_imports(SAMPLE)]
    assert flagged == ["import json"] * 4
    assert uncommented_imports(SAMPLE) == [
        n for n, text in enumerate(lines, 1) if text.strip() == "import json"]
