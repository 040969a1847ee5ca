"""Array-built linear models and their solution through OR-Tools' solvers.

Large clearing models have hundreds of thousands of columns, so they are assembled as numpy
arrays (bounds, objective, a sparse matrix in coordinate form) and handed to OR-Tools as one
serialised `MPModelRequest`. The request is written straight from the arrays in protobuf's
wire format: a per-coefficient Python API (or building `MPVariableProto` messages one by one)
costs seconds at this size, while the vectorised encoding takes a few tens of milliseconds.
OR-Tools then parses it in C++ (`MPSolver.SolveWithProto`), which reaches CLP and CBC as well
as SCIP; the pip build's `model_builder` solvers do not include CLP, and `model_builder`'s
array loader needs SciPy.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from matching.errors import SolverError

INF = float("inf")

# MPModelRequest.SolverType values used here.
SOLVER_TYPES = {
    "clp": linear_solver_pb2.MPModelRequest.CLP_LINEAR_PROGRAMMING,
    "glop": linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING,
    "scip": linear_solver_pb2.MPModelRequest.SCIP_MIXED_INTEGER_PROGRAMMING,
    "cbc": linear_solver_pb2.MPModelRequest.CBC_MIXED_INTEGER_PROGRAMMING,
}
_RESPONSE = linear_solver_pb2.MPSolutionResponse


class ModelArrays:
    """Collects columns, rows and coefficients from the parts of a model; maximises."""

    def __init__(self) -> None:
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._obj: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._row_lb: list[np.ndarray] = []
        self._row_ub: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self.num_vars = 0
        self.num_rows = 0

    def add_vars(self, lb: np.ndarray, ub: np.ndarray, obj: np.ndarray,
                 integer: bool | np.ndarray = False) -> int:
        """Appends columns and returns the index of the first one."""
        n = len(lb)
        self._lb.append(np.asarray(lb, dtype=np.float64))
        self._ub.append(np.asarray(ub, dtype=np.float64))
        self._obj.append(np.asarray(obj, dtype=np.float64))
        self._int.append(np.broadcast_to(np.asarray(integer, dtype=bool), (n,)))
        start = self.num_vars
        self.num_vars += n
        return start

    def add_rows(self, lb: np.ndarray, ub: np.ndarray) -> int:
        """Appends constraint rows lb ≤ a·x ≤ ub and returns the index of the first one."""
        self._row_lb.append(np.asarray(lb, dtype=np.float64))
        self._row_ub.append(np.asarray(ub, dtype=np.float64))
        start = self.num_rows
        self.num_rows += len(lb)
        return start

    def add_coefficients(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Adds matrix entries (row, column, value); entries must not repeat."""
        self._rows.append(np.asarray(rows, dtype=np.int64))
        self._cols.append(np.asarray(cols, dtype=np.int64))
        self._vals.append(np.asarray(vals, dtype=np.float64))

    def finish(self) -> LinearModel:
        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False) if parts else \
                np.zeros(0, dtype=dtype)

        rows = cat(self._rows, np.int64)
        cols = cat(self._cols, np.int64)
        vals = cat(self._vals, np.float64)
        order = np.lexsort((cols, rows))
        indptr = np.zeros(self.num_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.num_rows), out=indptr[1:])
        return LinearModel(
            var_lb=cat(self._lb, np.float64), var_ub=cat(self._ub, np.float64),
            obj=cat(self._obj, np.float64), is_integer=cat(self._int, bool),
            row_lb=cat(self._row_lb, np.float64), row_ub=cat(self._row_ub, np.float64),
            indptr=indptr, indices=cols[order], data=vals[order])


@dataclass
class LinearModel:
    """maximise obj·x subject to row_lb ≤ A x ≤ row_ub, var_lb ≤ x ≤ var_ub (A in CSR)."""

    var_lb: np.ndarray
    var_ub: np.ndarray
    obj: np.ndarray
    is_integer: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def num_vars(self) -> int:
        return len(self.var_lb)

    @property
    def num_rows(self) -> int:
        return len(self.row_lb)

    @property
    def is_mip(self) -> bool:
        return bool(self.is_integer.any())

    def row_activity(self, x: np.ndarray) -> np.ndarray:
        """A x, computed from the CSR arrays."""
        row_of = np.repeat(np.arange(self.num_rows), np.diff(self.indptr))
        return np.bincount(row_of, weights=self.data * x[self.indices], minlength=self.num_rows)


@dataclass
class Solution:
    """What a solve returned: status, primal values, row duals where the solver gives them."""

    status: str  # "optimal" | "feasible" | "infeasible" | "unbounded" | "not_solved" | "error"
    x: np.ndarray | None
    duals: np.ndarray | None
    objective: float
    best_bound: float
    wall_s: float
    solver: str
    detail: str = ""
    stats: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- protobuf wire format

def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base-128 varints of non-negative integers (< 2**35), vectorised: bytes, and each
    value's byte count."""
    v = values.astype(np.uint64, copy=False)
    n_bytes = np.ones(len(v), dtype=np.int64)
    for k in range(1, 5):
        n_bytes += v >= (1 << (7 * k))
    groups = np.empty((len(v), 5), dtype=np.uint8)
    for k in range(5):
        groups[:, k] = ((v >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
    keep = np.arange(5)[None, :] < n_bytes[:, None]
    more = np.arange(5)[None, :] < (n_bytes - 1)[:, None]
    groups[more] |= 0x80
    return groups[keep], n_bytes


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def _double_field(number: int, value: float) -> bytes:
    return _varint_bytes(number << 3 | 1) + struct.pack("<d", value)


def _variables_bytes(model: LinearModel) -> bytes:
    """Every MPVariableProto (lb, ub, objective, is_integer) as fixed 31-byte records."""
    n = model.num_vars
    rec = np.empty((n, 31), dtype=np.uint8)
    rec[:, 0] = 3 << 3 | 2  # MPModelProto.variable, length-delimited
    rec[:, 1] = 29
    for offset, number, values in ((2, 1, model.var_lb), (11, 2, model.var_ub),
                                   (20, 3, model.obj)):
        rec[:, offset] = number << 3 | 1  # fixed64 double
        rec[:, offset + 1:offset + 9] = \
            np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    rec[:, 29] = 4 << 3  # is_integer, varint
    rec[:, 30] = model.is_integer.astype(np.uint8)
    return rec.tobytes()


def _constraints_bytes(model: LinearModel) -> bytes:
    index_bytes, n_bytes = _varints(model.indices)
    # Byte offset of each row's first index within index_bytes.
    starts = np.zeros(len(n_bytes) + 1, dtype=np.int64)
    np.cumsum(n_bytes, out=starts[1:])
    index_blob = index_bytes.tobytes()
    value_blob = np.ascontiguousarray(model.data, dtype="<f8").tobytes()
    indptr = model.indptr.tolist()
    byte_at = starts[model.indptr].tolist()
    row_lb, row_ub = model.row_lb.tolist(), model.row_ub.tolist()
    parts = []
    for r in range(model.num_rows):
        a, b = indptr[r], indptr[r + 1]
        body = bytearray()
        if row_lb[r] != -INF:
            body += _double_field(2, row_lb[r])
        if row_ub[r] != INF:
            body += _double_field(3, row_ub[r])
        if b > a:
            body += _field_bytes(6, index_blob[byte_at[r]:byte_at[r + 1]])
            body += _field_bytes(7, value_blob[8 * a:8 * b])
        parts.append(_field_bytes(4, bytes(body)))
    return b"".join(parts)


def encode_request(model: LinearModel, solver: str, time_limit_s: float | None,
                   parameters: str = "") -> bytes:
    """The serialised MPModelRequest for `model` (maximisation) on `solver`."""
    model_bytes = b"\x08\x01" + _variables_bytes(model) + _constraints_bytes(model)
    request = _field_bytes(1, model_bytes) + _varint_bytes(2 << 3) + \
        _varint_bytes(SOLVER_TYPES[solver])
    if time_limit_s is not None:
        request += _double_field(3, max(time_limit_s, 0.0))
    if parameters:
        request += _field_bytes(5, parameters.encode())
    return request


_STATUS = {
    _RESPONSE.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name[name].number: label
    for name, label in (
        ("MPSOLVER_OPTIMAL", "optimal"), ("MPSOLVER_FEASIBLE", "feasible"),
        ("MPSOLVER_INFEASIBLE", "infeasible"), ("MPSOLVER_UNBOUNDED", "unbounded"),
        ("MPSOLVER_NOT_SOLVED", "not_solved"))
}


def solve(model: LinearModel, *, solver: str, time_limit_s: float | None = None,
          mip_gap: float = 1e-4, seed: int = 0) -> Solution:
    """Solves `model` with an OR-Tools solver ("clp", "glop", "scip" or "cbc")."""
    parameters = ""
    if solver == "scip":
        # SolveWithProto hands SCIP its own defaults (gap 0): set the gap and seed here.
        parameters = (f"limits/gap = {mip_gap!r}\n"
                      f"randomization/randomseedshift = {int(seed) % 2**31}\n"
                      "parallel/maxnthreads = 1\n")
    request = linear_solver_pb2.MPModelRequest.FromString(
        encode_request(model, solver, time_limit_s, parameters))
    response = _RESPONSE()
    start = time.perf_counter()
    pywraplp.Solver.SolveWithProto(request, response)
    wall = time.perf_counter() - start
    status = _STATUS.get(response.status, "error")
    has_x = status in ("optimal", "feasible") and len(response.variable_value) == model.num_vars
    x = np.array(response.variable_value, dtype=np.float64) if has_x else None
    duals = np.array(response.dual_value, dtype=np.float64) \
        if len(response.dual_value) == model.num_rows and model.num_rows else None
    if status == "error" and response.status_str:
        raise SolverError(f"{solver}: {response.status_str}")
    return Solution(status=status if has_x or status not in ("optimal", "feasible")
                    else "not_solved",
                    x=x, duals=duals, objective=float(response.objective_value),
                    best_bound=float(response.best_objective_bound), wall_s=wall,
                    solver=solver, detail=response.status_str)
