"""Every ``python launch.py`` command that README.md and docs/*.md show, planned as written.

Each command runs with ``--plan-json`` (nothing is created) against a throw-away store, so a renamed
key, group or option fails here before a reader types it. A command whose cells cannot be planned on
a machine without the data must be refused for that reason only: preflight checks every key, name
and value before it looks for data files (``dnrt/preflight.py``), so such a command is still checked
up to its data. A command shown with its ``error:`` output must print that error.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.conftest import ROOT, compose_cfg

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
    params = []
    for doc in DOCS:
        text = doc.read_text()
        found = [(n, c, None) for n, c in _inline(text)] + _fenced(text)
        for line, command, shown in found:
            params.append(pytest.param(command, shown, id=f"{doc.relative_to(ROOT)}:{line}"))
    return params


COMMANDS = doc_commands()


def test_the_readme_has_commands_to_check():
    readme = [p for p in COMMANDS if p.id.startswith("README.md:")]
    assert len(readme) >= 3, "no `python launch.py` commands found in README.md: has the extraction broken?"


def _plan(out: str) -> dict:
    start = out.find('{\n  "cells"')
    assert start >= 0, f"no JSON plan in the output:\n{out[-3000:]}"
    return json.JSONDecoder().raw_decode(out[start:])[0]


@pytest.mark.parametrize(("command", "shown_error"), COMMANDS)
def test_doc_command_plans(command, shown_error, store, tmp_path):
    args = shlex.split(command)[2:]
    if any(a.endswith(SCHEMATIC) for a in args):
        cfg = compose_cfg()
        keys = [a.split("=")[0] for a in args if "=" in a]
        assert all(k in cfg for k in keys), f"a schematic command names keys the config lacks: {keys}"
        return
    env = store.env(DNRT_DATA_DIR=str(tmp_path / "data"))  # no data but what the command makes
    if any(flag in args for flag in NOT_PLANNED):
        proc = store.launch_here(*args, env=env)
        assert proc.returncode == 0 and proc.stdout.strip(), f"exit {proc.returncode}:\n{proc.stderr[-2000:]}"
        return
    args = [a for a in args if a not in ("--plan", "--plan-json")]
    # the store under test, whatever store the command names
    proc = store.launch_here(*args, f"tracking.uri={store.uri}", "--plan-json", env=env)
    if shown_error is not None:
        expected = shown_error.split("...")[0].rstrip()
        assert proc.returncode == 2 and expected in proc.stderr, (
            f"the docs show `{shown_error}`; the command exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        return
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    plan = _plan(proc.stdout)
    assert plan["cells"], "the plan has no cells"
    for cell in plan["cells"]:
        if cell["action"] == "refused":
            allowed = [why for pattern, why in MISSING_DATA.items() if re.search(pattern, cell["detail"])]
            assert allowed, f"cell {cell['cell']} ({cell['overrides']}) refused: {cell['detail']}"
        else:
            assert cell["action"] == "new" and re.fullmatch(r"[0-9a-f]{16}", cell["config_hash"]), cell
