"""The suite's hooks and shared fixtures live in ``tests/harness`` (see its ``__init__``); registered here."""

pytest_plugins = ["tests.harness.hooks", "tests.harness.fixtures"]
