"""DNRT building blocks: RAA, the activation registry, activation surgery and ARR."""

from .activations import ActSpec, act_needs_shape, create_act, list_acts, register_act
from .arr import ARR, gather_in_rank_order
from .gdn import GDN
from .memory import ClassResponseMemory
from .raa import RAA
from .surgery import SurgeryReport, find_activation_sites, swap_activations
from .taps import ResponseTaps, match_modules, pool_response

__all__ = [
    "ARR", "ActSpec", "GDN", "RAA", "ClassResponseMemory", "ResponseTaps", "SurgeryReport", "act_needs_shape",
    "create_act",
    "find_activation_sites", "gather_in_rank_order", "list_acts", "match_modules", "pool_response",
    "register_act", "swap_activations",
]
