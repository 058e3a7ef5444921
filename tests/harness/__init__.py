"""The test suite's harness: what the tests share, in one place.

- ``config``: the repository's paths, the small-run overrides (``FAST``, ``SMALL``...), ``compose_cfg``;
- ``launcher``: the one way tests launch a script (in the test process, or in a process of its own where
  the command is signalled or killed) and the environment a launched command gets;
- ``store``: ``Store``, the tests' MLflow store helper, and the session's trained sweep store;
- ``hooks``: markers and test tiers, xdist groups, the session's thread policy (pytest hooks);
- ``fixtures``: every shared fixture (stores, sweep store, SLURM cluster, MLflow server, browser);
- ``services``: the real services those fixtures start.

``tests/conftest.py`` registers ``hooks`` and ``fixtures`` through ``pytest_plugins``; test modules import
the rest. Data the tests write in real formats (CIFAR, ImageFolder, DGraphFin, generated sweep stores)
comes from the library module ``dnrt.testing``, which users and benchmarks share.
"""
