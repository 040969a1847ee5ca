"""Array-built linear models and their solution through OR-Tools' CLP and CBC.

Large clearing models have hundreds of thousands of columns, so they are assembled as numpy
arrays (bounds, objective, a sparse matrix in coordinate form) and handed to OR-Tools as one
serialised `MPModelRequest`. The request is written straight from the arrays in protobuf's
wire format: a per-coefficient Python API (or building `MPVariableProto` messages one by one)
costs seconds at this size, while the vectorised encoding takes a few tens of milliseconds.
OR-Tools parses it in C++. CLP (dual simplex) solves the linear programs: it returns a vertex,
which matters because the clearing's matrices are totally unimodular, so a vertex is integral
in 0.1 kVA units. CBC solves the (small) mixed-integer remainder of the block selection.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from matching.errors import SolverError

INF = float("inf")

_REQUEST = linear_solver_pb2.MPModelRequest
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
    """maximise obj·x subject to row_lb ≤ A x ≤ row_ub, var_lb ≤ x ≤ var_ub (A in CSR).

    Only the column bounds and integrality change between the solves of one clearing, so the
    encoded rows are kept and reused.
    """

    var_lb: np.ndarray
    var_ub: np.ndarray
    obj: np.ndarray
    is_integer: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    _rows_bytes: bytes | None = field(default=None, repr=False)

    @property
    def num_vars(self) -> int:
        return len(self.var_lb)

    @property
    def num_rows(self) -> int:
        return len(self.row_lb)

    def rows_bytes(self) -> bytes:
        if self._rows_bytes is None:
            self._rows_bytes = _constraints_bytes(self)
        return self._rows_bytes


@dataclass
class Solution:
    """What a solve returned: status, primal values, reduced costs where the solver gives them."""

    status: str  # "optimal" | "feasible" | "infeasible" | "unbounded" | "not_solved"
    x: np.ndarray | None
    reduced_costs: np.ndarray | None
    objective: float
    best_bound: float
    wall_s: float
    solver: str
    detail: str = ""


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


def _variables_bytes(lb: np.ndarray, ub: np.ndarray, obj: np.ndarray,
                     is_integer: np.ndarray) -> bytes:
    """Every MPVariableProto (lb, ub, objective, is_integer) as fixed 31-byte records."""
    n = len(lb)
    rec = np.empty((n, 31), dtype=np.uint8)
    rec[:, 0] = 3 << 3 | 2  # MPModelProto.variable, length-delimited
    rec[:, 1] = 29
    for offset, number, values in ((2, 1, lb), (11, 2, ub), (20, 3, obj)):
        rec[:, offset] = number << 3 | 1  # fixed64 double
        rec[:, offset + 1:offset + 9] = \
            np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    rec[:, 29] = 4 << 3  # is_integer, varint
    rec[:, 30] = is_integer.astype(np.uint8)
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


def model_bytes(model: LinearModel, var_lb: np.ndarray, var_ub: np.ndarray,
                is_integer: np.ndarray) -> bytes:
    """The serialised MPModelProto (maximisation) of `model` with the given column bounds."""
    return b"\x08\x01" + _variables_bytes(var_lb, var_ub, model.obj, is_integer) + \
        model.rows_bytes()


_STATUS = {
    _RESPONSE.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name[name].number: label
    for name, label in (
        ("MPSOLVER_OPTIMAL", "optimal"), ("MPSOLVER_FEASIBLE", "feasible"),
        ("MPSOLVER_INFEASIBLE", "infeasible"), ("MPSOLVER_UNBOUNDED", "unbounded"),
        ("MPSOLVER_NOT_SOLVED", "not_solved"))
}


def _solution(response, model: LinearModel, solver: str, wall: float,
              with_reduced_costs: bool) -> Solution:
    status = _STATUS.get(response.status, "error")
    if status == "error":
        raise SolverError(f"{solver}: {response.status_str or 'abnormal termination'}")
    has_x = status in ("optimal", "feasible") and len(response.variable_value) == model.num_vars
    if status in ("optimal", "feasible") and not has_x:
        status = "not_solved"
    x = np.array(response.variable_value, dtype=np.float64) if has_x else None
    rc = None
    if with_reduced_costs and has_x and len(response.reduced_cost) == model.num_vars:
        rc = np.array(response.reduced_cost, dtype=np.float64)
    return Solution(status=status, x=x, reduced_costs=rc,
                    objective=float(response.objective_value),
                    best_bound=float(response.best_objective_bound), wall_s=wall,
                    solver=solver, detail=response.status_str)


def solve_lp(model: LinearModel, var_lb: np.ndarray, var_ub: np.ndarray, *,
             time_limit_s: float | None) -> Solution:
    """Solves the linear relaxation (every column continuous) with CLP's dual simplex."""
    request = _REQUEST.FromString(
        _field_bytes(1, model_bytes(model, var_lb, var_ub, np.zeros(model.num_vars, bool)))
        + _varint_bytes(2 << 3) + _varint_bytes(_REQUEST.CLP_LINEAR_PROGRAMMING)
        + (b"" if time_limit_s is None else _double_field(3, max(time_limit_s, 0.0))))
    response = _RESPONSE()
    start = time.perf_counter()
    pywraplp.Solver.SolveWithProto(request, response)
    return _solution(response, model, "clp", time.perf_counter() - start, True)


def solve_mip(model: LinearModel, var_lb: np.ndarray, var_ub: np.ndarray, *,
              time_limit_s: float, mip_gap: float) -> Solution:
    """Solves the model with its integer columns through CBC, to a relative gap."""
    proto = linear_solver_pb2.MPModelProto.FromString(
        model_bytes(model, var_lb, var_ub, model.is_integer))
    solver = pywraplp.Solver.CreateSolver("CBC")
    if solver is None:
        raise SolverError("CBC is not available in this OR-Tools build")
    error = solver.LoadModelFromProto(proto)
    if error:
        raise SolverError(f"cbc: {error}")
    solver.SetNumThreads(1)
    solver.SetTimeLimit(int(max(time_limit_s, 0.0) * 1000))
    parameters = pywraplp.MPSolverParameters()
    parameters.SetDoubleParam(parameters.RELATIVE_MIP_GAP, mip_gap)
    start = time.perf_counter()
    solver.Solve(parameters)
    wall = time.perf_counter() - start
    response = _RESPONSE()
    solver.FillSolutionResponseProto(response)
    return _solution(response, model, "cbc", wall, False)
