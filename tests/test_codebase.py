"""House rules that CI keeps: ruff clean, the library never imports the analysis package, and the
library modules stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.conftest import ROOT

LIBRARY = ["dnrt", "hydra_plugins", "analysis", "benchmarks"]
MAX_LINES = 400


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_library_never_imports_analysis():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "dnrt").rglob("*.py")
                 if any(m == "analysis" or m.startswith("analysis.") for m in _imported_modules(p))]
    assert offenders == []


def test_library_modules_stay_small():
    long = {str(p.relative_to(ROOT)): n for d in LIBRARY for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# The tracking contract lives in one module; a tag name typed anywhere else drifts from it. The pin
# test spells the stored strings on purpose, to check the schema against them.
TAG_SCANNED = ["dnrt", "analysis", "hydra_plugins", "benchmarks", "tests"]
TAG_HOMES = {ROOT / "dnrt" / "tracking_schema.py", ROOT / "tests" / "test_tracking_schema.py"}
DNRT_NAME = re.compile(r"(?<!\w)dnrt\.(\w+)")


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def _not_tags() -> set[str]:
    """Names after ``dnrt.`` that are no tag: dnrt's modules and packages, and its OmegaConf resolvers."""
    from dnrt.resolvers import RESOLVERS

    lib = ROOT / "dnrt"
    return ({p.stem for p in lib.glob("*.py")} | {p.name for p in lib.iterdir() if p.is_dir()}
            | {name.removeprefix("dnrt.") for name in RESOLVERS})


def tag_literals(paths) -> list[str]:
    """``file:line: dnrt.<name>`` for every string (docstrings aside) naming a ``dnrt.`` tag."""
    not_tags, found = _not_tags(), []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: dnrt.{m}"
                          for m in DNRT_NAME.findall(node.value) if m not in not_tags]
    return found


def test_tag_names_are_typed_only_in_the_schema():
    paths = [p for d in TAG_SCANNED for p in (ROOT / d).rglob("*.py") if p not in TAG_HOMES]
    assert tag_literals(paths + [ROOT / "launch.py"]) == []
    assert tag_literals([ROOT / "dnrt" / "tracking_schema.py"])  # the scan sees the names where they are
