"""Every ``python launch.py`` command that README.md and docs/*.md show, planned as written.

Each command runs with ``--plan-json`` (nothing is created) against a throw-away store, so a renamed
key, group or option fails here before a reader types it. A sweep is planned as a few plans that
together take every value it types (:func:`covering_plans`), not its whole product: a preset's
120-cell sweep would cost minutes of composition per command. A command whose cells cannot be planned on
a machine without the data must be refused for that reason only: preflight checks every key, name
and value before it looks for data files (``dnrt/preflight.py``), so such a command is still checked
up to its data. A command shown with its ``error:`` output must print that error.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import torch

from tests.harness.config import ROOT, compose_cfg

pytestmark = pytest.mark.slow  # each command is a launch.py run (in this process)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCH = "python launch.py"

# Refusals a plan may give here, each with why: the data is not on this machine (nor on CI's).
# Anything else a plan refuses fails the test.
MISSING_DATA = {
    r"CIFAR-10 not found": "CIFAR-10 is not downloadable here (no internet in CI)",
    r"CIFAR-100 not found": "CIFAR-100 is not downloadable here (no internet in CI)",
    r"image folder not found": "ImageNet-100 and ImageNet-1K need a licensed copy",
    r"DGraphFin not found": "DGraphFin is only available by registration (https://dgraph.xinye.com)",
}
# A schematic command (values elided: `model=...`, or `...` for any overrides, as in docs/design.md)
# is not run: each key it names must be a key of the composed config.
SCHEMATIC = "..."
# Commands that cannot be planned, each with why: their config is composed instead, so a renamed key
# still fails.
COMPOSE_ONLY: dict[str, str] = {}
# `--rerun RUN_ID`: the id stands for one the reader has. The flag must exist (an unknown id is refused
# in one line, exit 2) and every key the command sets must be a key of the config; tests/test_rerun.py
# re-runs real runs.
RERUN = "--rerun"
# Commands that are not plans, each with why: they run as written and must succeed.
NOT_PLANNED = {
    "--help": "prints Hydra's help (every group and its options) and creates nothing",
}


def _inline(text: str) -> list[tuple[int, str]]:
    """``python launch.py ...`` in single backticks, with their line numbers."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"(?<!`)`(" + re.escape(LAUNCH) + r"[^`]*)`(?!`)", text)]


def _fenced(text: str) -> list[tuple[int, str, str | None]]:
    """``python launch.py`` lines in fenced code blocks (``$ `` prompts and ``\\`` continuations
    joined, ``# comments`` dropped), each with the ``error:`` line shown under it, if any."""
    out, lines, fence, i = [], text.splitlines(), False, 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if line.startswith("```"):
            fence = not fence
            continue
        command = line.removeprefix("$ ")
        if not fence or not command.startswith(LAUNCH):
            continue
        start = i
        while command.endswith("\\") and i < len(lines):
            command = command[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        shown = lines[i].strip() if i < len(lines) and lines[i].strip().startswith("error:") else None
        out.append((start, command.split(" #")[0].strip(), shown))
    return out


def doc_commands() -> list[pytest.param]:
    """One case per distinct command (and shown error), named after where it first appears."""
    seen: dict[tuple[str, str | None], str] = {}
    for doc in DOCS:
        text = doc.read_text()
        found = [(n, c, None) for n, c in _inline(text)] + _fenced(text)
        for line, command, shown in found:
            seen.setdefault((command, shown), f"{doc.relative_to(ROOT)}:{line}")
    return [pytest.param(command, shown, id=where) for (command, shown), where in seen.items()]


COMMANDS = doc_commands()


def test_the_readme_has_commands_to_check():
    readme = [p for p in COMMANDS if p.id.startswith("README.md:")]
    assert len(readme) >= 3, "no `python launch.py` commands found in README.md: has the extraction broken?"


def _plan(out: str) -> dict:
    start = out.find('{\n  "cells"')
    assert start >= 0, f"no JSON plan in the output:\n{out[-3000:]}"
    return json.JSONDecoder().raw_decode(out[start:])[0]


def _swept(arg: str) -> list[str] | None:
    """The values of a typed comma sweep (``act=gelu,raa``), else None."""
    key, eq, value = arg.partition("=")
    if not eq or "," not in value or any(c in value for c in "[]{}()'\""):
        return None
    return value.split(",")


def covering_plans(args: list[str]) -> list[list[str]]:
    """Overrides for plans that, together, take every value the command types: plan i takes value i
    (modulo its count) of each typed sweep, so every typed key and option is planned in max(count)
    plans instead of the product; the preset's own sweep (``hydra.sweeper.params``, which
    tests/test_presets.py covers) is pinned to its first cell."""
    swept = {i: values for i, a in enumerate(args) if (values := _swept(a))}
    first = [f"{a.partition('=')[0]}={swept[i][0]}" if i in swept else a for i, a in enumerate(args) if a != "-m"]
    params = compose_cfg(first, return_hydra_config=True).hydra.sweeper.get("params") or {}
    typed = {a.partition("=")[0].lstrip("+~") for a in args}
    pins = [f"{key}={str(value).split(',')[0]}" for key, value in params.items()
            if key not in typed and "(" not in str(value)]  # choice lists; a search space (Optuna) stays
    count = max((len(v) for v in swept.values()), default=1)
    return [[f"{a.partition('=')[0]}={swept[i][n % len(swept[i])]}" if i in swept else a for i, a in enumerate(args)]
            + pins for n in range(count)]


@pytest.mark.parametrize(("command", "shown_error"), COMMANDS)
def test_doc_command_plans(command, shown_error, store):
    args = shlex.split(command)[2:]
    if any(a.endswith(SCHEMATIC) for a in args):
        cfg = compose_cfg()
        keys = [a.split("=")[0] for a in args if "=" in a]
        assert all(k in cfg for k in keys), f"a schematic command names keys the config lacks: {keys}"
        return
    # no data but what the command makes: data_dir is the default, relative to this test's directory
    env = {k: v for k, v in store.env().items() if k != "DNRT_DATA_DIR"}
    if RERUN in args:
        cfg = compose_cfg()
        keys = [a.split("=")[0] for a in args if "=" in a and not a.startswith("[")]
        assert all(k in cfg for k in keys), f"a --rerun command names keys the config lacks: {keys}"
        proc = store.launch(RERUN, "0" * 32, f"tracking.uri={store.uri}", env=env)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        return
    if any(flag in args for flag in NOT_PLANNED):
        proc = store.launch(*args, env=env)
        assert proc.returncode == 0 and proc.stdout.strip(), f"exit {proc.returncode}:\n{proc.stderr[-2000:]}"
        return
    args = [a for a in args if a not in ("--plan", "--plan-json")]
    if any(a.startswith(prefix) for a in args for prefix in COMPOSE_ONLY):
        assert compose_cfg([a for a in args if a != "-m"], return_hydra_config=True).hydra.sweeper
        return
    if shown_error is not None:  # its plan refuses the one cell with the error the docs show
        proc = store.launch(*args, f"tracking.uri={store.uri}", "--plan-json", env=env)
        expected = shown_error.removeprefix("error: ").split("...")[0].rstrip()
        cells = _plan(proc.stdout)["cells"] if proc.returncode == 0 else []
        assert [(c["action"], c["detail"][:len(expected)]) for c in cells] == [("refused", expected)], (
            f"the docs show `{shown_error}`; exit {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return
    for overrides in covering_plans(args):
        # the store under test, whatever store the command names
        proc = store.launch(*overrides, f"tracking.uri={store.uri}", "--plan-json", env=env)
        assert proc.returncode == 0, f"{overrides}: exit {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        plan = _plan(proc.stdout)
        assert plan["cells"], f"{overrides}: the plan has no cells"
        for cell in plan["cells"]:
            if cell["action"] == "refused":
                allowed = [why for pattern, why in MISSING_DATA.items() if re.search(pattern, cell["detail"])]
                assert allowed, f"{overrides}: cell {cell['cell']} refused: {cell['detail']}"
            else:
                assert cell["action"] == "new" and re.fullmatch(r"[0-9a-f]{16}", cell["config_hash"]), cell


def test_readme_python_blocks_run():
    """The README's Python examples run as written (RAA and ARR in a timm model, one training step)."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert blocks, "no ```python block in README.md"
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
        if "report" in scope and "arr" in scope:  # the surgery example: it changed the model and trained
            assert scope["report"].sites and scope["report"].added_params > 0
            assert scope["loss"].requires_grad and torch.isfinite(scope["loss"])
