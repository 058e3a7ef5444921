"""The suite's hooks and shared fixtures live in ``tests/harness`` (see its ``__init__``); registered here.
``pytester`` runs the harness's own tests (tests/test_harness.py) on generated test files."""

pytest_plugins = ["tests.harness.hooks", "tests.harness.fixtures", "pytester"]
