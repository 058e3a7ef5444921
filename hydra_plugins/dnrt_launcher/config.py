"""Registers the config schemas of dnrt's launchers and sweeper and of conf/'s fixed-key groups:
Hydra imports this module in its plugin scan at startup, before it composes the config. The schemas
live in dnrt (:mod:`dnrt.launcher_schemas`, :mod:`dnrt.schemas`) and are registered when dnrt is
imported, so conf/ also composes where the scan does not run this module.
"""

import dnrt  # noqa: F401  (registers the schemas and resolvers)
