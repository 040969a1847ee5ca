"""Errors of the chain adapter, and the translation of contract reverts into them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

__all__ = [
    "ChainError",
    "ChainResetError",
    "ChainRevertError",
    "ChainTimeoutError",
    "ChainUnavailableError",
    "decode_revert",
]


class ChainError(Exception):
    """Root of every error raised by the chain adapter."""


class ChainUnavailableError(ChainError):
    """The chain node cannot be reached."""


class ChainResetError(ChainError):
    """The chain is not the one the platform recorded (other chain id, contract gone)."""


class ChainTimeoutError(ChainError):
    """A sent transaction was not mined in time."""


class ChainRevertError(ChainError):
    """A contract call reverted; `error_name` and `error_args` are decoded with the ABI."""

    def __init__(self, error_name: str, args: Mapping[str, Any], message: str) -> None:
        super().__init__(message)
        self.error_name = error_name
        # Not `self.args`: Exception.args holds the message, which repr() and pickling use.
        self.error_args: dict[str, Any] = dict(args)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery and multiprocessing pickle exceptions; rebuild with all three arguments.
        return (type(self), (self.error_name, self.error_args, self.message))


# Readable sentences for the errors our contracts raise; unknown errors fall back to
# "Name(arg=value, ...)". Placeholders are the ABI argument names.
REVERT_MESSAGES: dict[str, str] = {
    "CapacityMarketNotEnterpriseAccount": (
        "account {account} is not the registered account of enterprise {enterpriseId}"
    ),
    "CapacityMarketAccountAlreadyRegistered": (
        "account {account} is already registered for enterprise {enterpriseId}"
    ),
    "CapacityMarketInvalidEnterprise": (
        "enterprise id {enterpriseId} and account {account} must both be non-zero"
    ),
    "CapacityMarketInvalidDeliveryDay": "delivery day {deliveryDay} is not a YYYYMMDD date",
    "CapacityMarketInvalidGateClosure": (
        "gate closure {gateClosure} of day {deliveryDay} must be a future Unix time in seconds"
    ),
    "CapacityMarketDayAlreadyOpen": "day {deliveryDay} is already open (gate {gateClosure})",
    "CapacityMarketDayNotOpen": "day {deliveryDay} is not open on chain",
    "CapacityMarketGateClosed": (
        "the gate of day {deliveryDay} closed at {gateClosure} (block time {blockTimestamp})"
    ),
    "CapacityMarketGateOpen": (
        "the gate of day {deliveryDay} closes only at {gateClosure} "
        "(block time {blockTimestamp})"
    ),
    "CapacityMarketInvalidOrder": (
        "order id {orderId} and content hash {contentHash} must both be non-zero"
    ),
    "CapacityMarketInvalidSide": "side {side} is neither 0 (sell) nor 1 (buy)",
    "CapacityMarketOrderExists": "order {orderId} is already recorded",
    "CapacityMarketUnknownOrder": "order {orderId} is not recorded",
    "CapacityMarketOrderCancelled": "order {orderId} is cancelled",
    "CapacityMarketVersionLimit": "order {orderId} has reached its version limit",
    "CapacityMarketInvalidBatch": "batch {batchId} with {count} items is not valid",
    "CapacityMarketBatchExists": "batch {batchId} is already recorded",
    "CapacityMarketInvalidOrderAction": "item {index} of the batch is not valid",
    "CapacityMarketWrongRun": (
        "run {runNumber} of day {deliveryDay} is not its current run {currentRun}"
    ),
    "CapacityMarketAlreadyPublished": "run {runNumber} of day {deliveryDay} is already published",
    "CapacityMarketNotPublished": "run {runNumber} of day {deliveryDay} is not published",
    "CapacityMarketNoTrades": "no trades given for run {runNumber} of day {deliveryDay}",
    "CapacityMarketTradeCountMismatch": (
        "run {runNumber} of day {deliveryDay} holds {recorded} trades, not {given}"
    ),
    "CapacityMarketInvalidResultRoot": (
        "the result root of run {runNumber} of day {deliveryDay} must be non-zero"
    ),
    "CapacityMarketReasonRequired": "voiding day {deliveryDay} needs a reason",
    "AccessControlUnauthorizedAccount": "account {account} does not hold role {neededRole}",
    "AccessControlBadConfirmation": "a role can only be renounced by its holder",
    "CapacityMarketInvalidPeriod": (
        "period {periodId} is neither a day YYYYMMDD nor a month YYYYMM00 from the year 2000"
    ),
    "CapacityMarketInvalidSettlementKind": (
        "settlement kind {kind} does not fit period {periodId} (1-3 for a day, 4 for a month)"
    ),
    "CapacityMarketWrongSettlementRun": (
        "settlement run {runNumber} of period {periodId} is not its next run {expectedRun}"
    ),
    "CapacityMarketInvalidSettlementHash": (
        "settlement run {runNumber} of period {periodId} needs non-zero roots and hashes"
    ),
}

# Role ids are hashes; name the ones we know so a missing role reads as "REGISTRAR_ROLE".
_ROLE_NAMES = {"0x" + "00" * 32: "DEFAULT_ADMIN_ROLE"} | {
    "0x" + keccak(text=name).hex(): name
    for name in ("REGISTRAR_ROLE", "CLEARING_ROLE", "MARKET_OPERATOR_ROLE")
}

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string), from require/revert("…")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256), from assert/overflow


def _readable(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        inner = abi_type[: abi_type.rfind("[")] if abi_type.endswith("]") else abi_type
        return [_readable(inner, item) for item in value]
    return value


def _type_string(param: Mapping[str, Any]) -> str:
    # Tuples are spelled out so their selector matches the compiler's.
    abi_type = str(param["type"])
    if abi_type.startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param.get("components", []))
        return f"({inner}){abi_type[len('tuple'):]}"
    return abi_type


def decode_revert(data: bytes | str | None, abi: Sequence[Mapping[str, Any]] | None,
                  *, context: str = "") -> ChainRevertError:
    """Translate revert data into a ChainRevertError using the `error` entries of `abi`."""
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x")) if data else b""
    data = data or b""
    where = f" (in {context})" if context else ""
    selector, payload = data[:4], data[4:]

    if selector == _ERROR_STRING_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], payload)
        except DecodingError:
            reason = "0x" + payload.hex()
        return ChainRevertError("Error", {"reason": reason}, f"reverted: {reason}{where}")
    if selector == _PANIC_SELECTOR:
        code = int.from_bytes(payload[:32], "big") if payload else 0
        return ChainRevertError("Panic", {"code": code},
                                f"Panic 0x{code:02x}: assert, overflow or bad index{where}")

    for entry in abi or ():
        if entry.get("type") != "error":
            continue
        inputs = list(entry.get("inputs", []))
        types = [_type_string(p) for p in inputs]
        signature = f"{entry['name']}({','.join(types)})"
        if function_signature_to_4byte_selector(signature) != selector:
            continue
        try:
            values = abi_decode(types, payload)
        except DecodingError:
            break
        args = {
            (p.get("name") or f"arg{i}"): _readable(t, v)
            for i, (p, t, v) in enumerate(zip(inputs, types, values, strict=True))
        }
        name = str(entry["name"])
        return ChainRevertError(name, args, f"{name}: {_describe(name, args)}{where}")

    if not data:
        return ChainRevertError("", {}, f"reverted without a reason{where}")
    return ChainRevertError("", {"data": "0x" + data.hex()},
                            f"reverted with unknown error data 0x{data.hex()}{where}")


def _describe(name: str, args: Mapping[str, Any]) -> str:
    shown = {k: _ROLE_NAMES.get(v, v) if isinstance(v, str) else v for k, v in args.items()}
    template = REVERT_MESSAGES.get(name)
    if template is not None:
        try:
            return template.format(**shown)
        except (KeyError, IndexError):
            pass  # the ABI changed under the template: fall back to the generic form
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "reverted"
