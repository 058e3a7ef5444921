"""dnrt: Dynamic Neural Response Tuning (RAA + ARR) as a research instrument."""

from .resolvers import register_resolvers

register_resolvers()  # the configs in conf/ use them: any process that imports dnrt can resolve one
