"""House rules that CI keeps: ruff clean, the library never imports the analysis package, the library
modules stay small, and the import graph has no cycles and follows the layers of docs/design.md §1."""

from __future__ import annotations

import ast
import re
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


# -- the import graph (docs/design.md §1, "Layers") ------------------------------------------------------
GRAPHED = ["dnrt", "hydra_plugins", "analysis", "benchmarks", "tests", "launch.py"]
# Imports that break a layer rule, each with what removes it; the test fails once one is gone, so the
# list only shrinks.
KNOWN_BREAKS: dict[tuple[str, str], str] = {}


def _module_files() -> dict[str, object]:
    """Every module of the repository's packages by dotted name (a package by its ``__init__``)."""
    files = {}
    for top in GRAPHED:
        paths = [ROOT / top] if top.endswith(".py") else (ROOT / top).rglob("*.py")
        for path in paths:
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only: never executed)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _edges(imports: list[ast.stmt], name: str, path, files: dict[str, object]) -> set[str]:
    """The repository modules that running ``imports`` (in module ``name`` at ``path``) executes:
    relative ones resolved, plus the packages whose ``__init__`` they run (except ``name``'s own)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in imports:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            prefix = ".".join(parts[:i])
            if prefix in files and prefix not in own:
                edges.add(prefix)
    return edges


def _imports(tree: ast.AST, skipped: set[int] = frozenset()) -> list[ast.stmt]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def import_graph(files: dict[str, object]) -> dict[str, set[str]]:
    """module -> the repository modules that importing it executes: every ``import`` and ``from``
    at any depth (functions included, ``TYPE_CHECKING`` blocks not), relative ones resolved, plus the
    packages whose ``__init__`` such an import runs (except the importer's own packages)."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = _edges(_imports(tree, _type_checking_only(tree)), name, path, files)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def design_layers() -> list[list[str]]:
    """The module prefixes of each layer of docs/design.md §1, bottom layer first."""
    text = (ROOT / "docs" / "design.md").read_text()
    table = text.split("<!-- layers: begin -->")[1].split("<!-- layers: end -->")[0]
    rows = [line.split("|")[2] for line in table.strip().splitlines()[2:]]
    return [[cell.strip().strip("`") for cell in row.split(",")] for row in rows]


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The index of the layer with the longest prefix of ``module`` (``pkg.__init__``: that package
    alone); None when no layer names it."""
    best, best_len = None, -1
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if prefix.endswith(".__init__"):
                matches = module == prefix.removesuffix(".__init__")
            else:
                matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def layer_breaks(graph: dict[str, set[str]], layers: list[list[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where the imported module sits in a higher layer."""
    return {(a, b) for a, targets in graph.items() for b in targets
            if layer_of(b, layers) is not None and layer_of(a, layers) is not None
            and layer_of(b, layers) > layer_of(a, layers)}


def test_the_import_graph_is_read_as_python_runs_it():
    """The graph builder against a hand-written package: relative and absolute imports, imports in
    functions, package ``__init__``s run on the way, ``TYPE_CHECKING`` imports left out."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p" / "q").mkdir(parents=True)
        sources = {"p/__init__.py": "from .a import x\n", "p/a.py": "x = 1\n",
                   "p/q/__init__.py": "", "p/q/b.py": "def f():\n    from ..a import x\n    import p.q.c\n",
                   "p/q/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.q import b\n",
                   "p/d.py": "from p.q import b\n"}
        for rel, src in sources.items():
            (root / rel).write_text(src)
        files = {"p": root / "p/__init__.py", "p.a": root / "p/a.py", "p.q": root / "p/q/__init__.py",
                 "p.q.b": root / "p/q/b.py", "p.q.c": root / "p/q/c.py", "p.d": root / "p/d.py"}
        graph = import_graph(files)
    assert graph == {"p": {"p.a"}, "p.a": set(), "p.q": set(), "p.q.b": {"p.a", "p.q.c"}, "p.q.c": set(),
                     "p.d": {"p.q", "p.q.b"}}
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles(graph) == []


def test_no_import_cycles():
    assert import_cycles(import_graph(_module_files())) == []


def test_every_module_has_a_layer_and_imports_only_downward():
    layers = design_layers()
    graph = import_graph(_module_files())
    assert [m for m in graph if layer_of(m, layers) is None] == []
    breaks = layer_breaks(graph, layers)
    assert breaks - set(KNOWN_BREAKS) == set()
    assert set(KNOWN_BREAKS) <= breaks, "a known break is gone: remove it from KNOWN_BREAKS"


# Imports of the project's own modules inside functions in dnrt/, each with why it cannot be at the top.
DEFERRED_IMPORTS = {
    ("dnrt.launching.callbacks", "dnrt.launching.sweep_end"):
        "Hydra builds the sweep callback in every launch.py process (`--help` included); the sweep's end loads MLflow",
}


def deferred_imports(files: dict[str, object]) -> set[tuple[str, str]]:
    """(module, imported repository module) for every import inside a function of a dnrt module."""
    found = set()
    for name, path in files.items():
        if name.startswith("dnrt"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for fn in ast.walk(tree):
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.update((name, target) for target in _edges(_imports(fn), name, path, files))
    return found


def test_deferred_imports_of_dnrt_modules_are_the_listed_ones():
    """Everything else imports at the top, where the import graph and a reader see it."""
    assert deferred_imports(_module_files()) == set(DEFERRED_IMPORTS)
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
