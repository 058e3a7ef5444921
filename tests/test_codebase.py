"""House rules that CI keeps: ruff clean, the library never imports the analysis package, and the
library modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.harness.config import ROOT

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
