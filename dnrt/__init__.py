"""dnrt: Dynamic Neural Response Tuning (RAA + ARR) as a research instrument."""

from .launcher_schemas import register_launcher_schemas
from .resolvers import register_resolvers
from .schemas import register_schemas

# conf/ needs all three wherever it is composed or resolved: its YAMLs name the typed schemas and the
# launcher and sweeper schemas in their defaults and call the resolvers, so any process that imports
# dnrt can compose and resolve it, with or without Hydra's plugin scan.
register_resolvers()
register_schemas()
register_launcher_schemas()
