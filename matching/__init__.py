"""Pure day-ahead clearing core for park capacity trading: no framework imports.

`clear(instance)` returns a `ClearingResult`; `check(instance, result)` verifies any result
independently of the solver.
"""

from matching.check import check
from matching.clearing import clear
from matching.errors import InvalidInstanceError, MatchingError, SolverError
from matching.instance import Asset, ClearingInstance, Network, Order
from matching.result import ClearingResult

__all__ = [
    "Asset", "ClearingInstance", "ClearingResult", "InvalidInstanceError", "MatchingError",
    "Network", "Order", "SolverError", "check", "clear",
]
