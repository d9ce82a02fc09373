"""Our own source files, parsed, for tests that hold a rule over the whole code base."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "streams", "processors", "gateway", "dodolens", "bench")


def offenders(find: Callable[[ast.AST], list[str]], *, owner: str) -> dict[str, list[str]]:
    """What ``find`` reports in each module but ``owner`` (the one place the rule's subject lives)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative != owner and (hits := find(ast.parse(path.read_text(), str(path)))):
                found[relative] = hits
    return found
