"""Connections to an Ethereum chain: one interface, an in-process and a JSON-RPC backend."""

from __future__ import annotations

import ast
import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from eth_tester.exceptions import ValidationError as EthTesterValidationError
from eth_utils import to_checksum_address
from eth_utils.exceptions import ValidationError as EthUtilsValidationError
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import BlockIdentifier

from .errors import (
    ChainError,
    ChainResetError,
    ChainRevertError,
    ChainTimeoutError,
    ChainUnavailableError,
    decode_revert,
)

__all__ = [
    "ANVIL_DEFAULT_KEY",
    "ChainConnection",
    "EthTesterChain",
    "JsonRpcChain",
    "Receipt",
    "connect",
]

# The first of anvil's (and Hardhat's) well-known development keys, derived from the public
# "test test … junk" mnemonic; a fresh anvil funds it with 10,000 ETH. DEV ONLY: anyone can
# spend from it on any chain, so never use it outside a local node.
ANVIL_DEFAULT_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

ABIEntries = Sequence[Mapping[str, Any]]

# Substrings of node answers meaning "this nonce is stale" (geth, anvil, py-evm spellings).
_NONCE_ERRORS = ("nonce too low", "already known", "known transaction", "invalid transaction nonce",
                 "replacement transaction underpriced")


@dataclass(frozen=True)
class Receipt:
    """The parts of a mined transaction's receipt the platform uses."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    logs: list[Any] = field(default_factory=list)
    contract_address: str | None = None  # set for a deployment


class ChainConnection:
    """Sends locally signed transactions and reads state; backends only differ in transport."""

    w3: Web3
    # What a revert looks like from this backend, and the block used for gas estimates.
    _revert_types: tuple[type[Exception], ...] = (ContractLogicError,)
    _estimate_block: str = "latest"

    def __init__(self, w3: Web3, *, receipt_timeout: float = 30.0) -> None:
        self.w3 = w3
        self.receipt_timeout = receipt_timeout
        # One nonce counter per sending key, so concurrent sends from one key never collide;
        # the per-key lock covers allocate → sign → submit, not the wait for the receipt.
        self._nonces: dict[str, int] = {}
        self._nonce_locks: dict[str, threading.Lock] = {}
        self._nonce_locks_guard = threading.Lock()

    # -- reads -----------------------------------------------------------------------------

    def chain_id(self) -> int:
        """Return the chain id the node reports (asked every time: the node may change)."""
        with self.guard():
            return int(self.w3.eth.chain_id)

    def block_number(self) -> int:
        """Return the number of the latest block."""
        with self.guard():
            return int(self.w3.eth.block_number)

    def latest_timestamp(self) -> int:
        """Return the timestamp of the latest block (the chain's clock)."""
        with self.guard():
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """Make the next block carry `timestamp` (development chains only: tests of time)."""
        raise NotImplementedError(f"{type(self).__name__} cannot set block times")

    def code_at(self, address: str) -> bytes:
        """Return the runtime code at `address` (empty when no contract is there)."""
        with self.guard():
            return bytes(self.w3.eth.get_code(to_checksum_address(address)))

    def balance_of(self, address: str) -> int:
        """Return the balance of `address` in wei."""
        with self.guard():
            return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def call(self, function: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
        """Call a view function; reverts become ChainRevertError."""
        with self.guard():
            try:
                return function.call(block_identifier=block)
            except self._revert_types as exc:
                raise self._as_revert(exc, function.contract_abi, str(function.fn_name)) from exc
            except BadFunctionCallOutput as exc:
                # Empty return data: typically no contract at the address any more.
                if not self.w3.eth.get_code(function.address):
                    raise ChainResetError(
                        f"{function.fn_name}: expected a contract at {function.address}, but "
                        "there is no code there: the chain was reset. Restart the node with "
                        "its state, or redeploy the contract and record the new address."
                    ) from exc
                raise ChainError(f"{function.fn_name}: undecodable answer: {exc}") from exc

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn transport failures inside the block into ChainUnavailableError."""
        yield

    # -- writes ----------------------------------------------------------------------------

    def send(
        self,
        account: LocalAccount,
        call: ContractFunction | ContractConstructor | None = None,
        *,
        to: str | None = None,
        value: int = 0,
        timeout: float | None = None,
        abi_errors: ABIEntries | None = None,
    ) -> Receipt:
        """Sign `call` (or a plain transfer to `to`) with `account`, send it, wait for it.

        Gas is estimated first, so a revert surfaces before anything is sent and is raised
        as ChainRevertError, decoded with the contract ABI's errors (plus `abi_errors`).
        """
        if (call is None) == (to is None):
            raise ValueError("send() takes either a contract call or a 'to' address")
        sender = account.address
        errors_abi = list(abi_errors or ()) + _abi_of(call)
        label = _label(call, to)

        with self.guard():
            with self._nonce_lock(sender):
                gas = self._estimate_gas(sender, call, to, value, errors_abi, label)
                tx_hash, tx = self._submit(account, call, to, value, gas)
            receipt = self._wait(tx_hash, self.receipt_timeout if timeout is None else timeout)
            if receipt.status != 1:
                raise self._explain_failure(tx, receipt, errors_abi, label)
            return receipt

    def deploy(self, account: LocalAccount, artefact: Mapping[str, Any],
               *ctor_args: Any) -> tuple[str, Receipt]:
        """Deploy the contract of a build artefact; return its address and the receipt."""
        factory = self.w3.eth.contract(abi=artefact["abi"], bytecode=artefact["bytecode"])
        receipt = self.send(account, factory.constructor(*ctor_args))
        if not receipt.contract_address:
            raise ChainError(f"deployment {receipt.tx_hash} created no contract")
        return receipt.contract_address, receipt

    def fund(self, from_account: LocalAccount, to_address: str, wei: int) -> Receipt:
        """Transfer `wei` from `from_account` to `to_address`."""
        return self.send(from_account, to=to_checksum_address(to_address), value=wei)

    # -- internals -------------------------------------------------------------------------

    def _nonce_lock(self, address: str) -> threading.Lock:
        with self._nonce_locks_guard:
            return self._nonce_locks.setdefault(address, threading.Lock())

    def _forget_nonces(self) -> None:
        # After the chain went back in time (snapshot revert, restart) the counters are stale.
        with self._nonce_locks_guard:
            self._nonces.clear()

    def _estimate_gas(self, sender: str, call: ContractFunction | ContractConstructor | None,
                      to: str | None, value: int, errors_abi: ABIEntries, label: str) -> int:
        params: dict[str, Any] = {"from": sender, "value": value}
        block = self._estimate_block
        try:
            if call is None:
                params["to"] = to
                return int(self.w3.eth.estimate_gas(params, block))  # type: ignore[arg-type]
            return int(call.estimate_gas(params, block))  # type: ignore[arg-type]
        except self._revert_types as exc:
            raise self._as_revert(exc, errors_abi, label) from exc
        except (Web3RPCError, EthUtilsValidationError, EthTesterValidationError) as exc:
            # Not a revert: typically the sender cannot pay for the gas.
            raise ChainError(f"{label}: the node refused the transaction from {sender} "
                             f"(is the account funded?): {exc}") from exc

    def _fee_fields(self) -> dict[str, int]:
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            priority = 10**9
        # Twice the base fee survives several full blocks of base-fee increases.
        return {"maxFeePerGas": 2 * base_fee + priority, "maxPriorityFeePerGas": priority}

    def _submit(self, account: LocalAccount,
                call: ContractFunction | ContractConstructor | None, to: str | None,
                value: int, gas: int) -> tuple[HexBytes, dict[str, Any]]:
        sender = account.address
        chain_id = int(self.w3.eth.chain_id)
        fees = self._fee_fields()
        for attempt in (1, 2):
            nonce = self._nonces.get(sender)
            if nonce is None:
                nonce = int(self.w3.eth.get_transaction_count(sender, "pending"))
            params: dict[str, Any] = {"from": sender, "value": value, "gas": gas,
                                      "nonce": nonce, "chainId": chain_id, **fees}
            if call is None:
                tx = {**params, "to": to, "data": b""}
            else:
                # Everything is given, so build_transaction only encodes the call data.
                tx = dict(call.build_transaction(params))  # type: ignore[arg-type]
            tx.pop("from", None)
            signed = account.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except (Web3RPCError, ValueError, EthUtilsValidationError,
                    EthTesterValidationError) as exc:
                if _is_nonce_error(exc):
                    self._nonces.pop(sender, None)  # re-sync from the node
                    if attempt == 1:
                        continue
                    # Stale again: another sender of this key (another process) took the
                    # nonce in between. Nothing of ours was sent; the write can be retried.
                    raise ChainTimeoutError(f"the nonce of {sender} was taken by another "
                                            f"transaction twice running: {exc}") from exc
                raise ChainError(f"node rejected the transaction from {sender}: {exc}") from exc
            self._nonces[sender] = nonce + 1
            tx["from"] = sender
            return HexBytes(tx_hash), tx
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, tx_hash: HexBytes, timeout: float) -> Receipt:
        try:
            raw = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout,
                                                           poll_latency=0.05)
        except TimeExhausted as exc:
            raise ChainTimeoutError(
                f"transaction 0x{tx_hash.hex().removeprefix('0x')} was not mined within "
                f"{timeout:g} s; it may still be mined later, check it before resending"
            ) from exc
        created = raw.get("contractAddress")
        return Receipt(
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            block_number=int(raw["blockNumber"]),
            gas_used=int(raw["gasUsed"]),
            status=int(raw["status"]),
            logs=list(raw["logs"]),
            contract_address=to_checksum_address(created) if created else None,
        )

    def _explain_failure(self, tx: Mapping[str, Any], receipt: Receipt,
                         errors_abi: ABIEntries, label: str) -> ChainRevertError:
        # A mined receipt carries no revert data: replay the call on the state of its block
        # to recover the reason (an earlier transaction in the block may be what broke it).
        replay = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if tx.get(k)}
        context = f"{label} (transaction {receipt.tx_hash}, block {receipt.block_number})"
        try:
            self.w3.eth.call(replay, block_identifier=receipt.block_number)  # type: ignore[arg-type]
        except self._revert_types as exc:
            return self._as_revert(exc, errors_abi, context)
        except Web3RPCError:
            pass
        return ChainRevertError(
            "", {}, f"reverted; the reason could not be recovered (in {context})")

    def _as_revert(self, exc: Exception, abi: ABIEntries, context: str) -> ChainRevertError:
        data: Any = getattr(exc, "data", None)
        if isinstance(data, dict):  # some nodes wrap it: {"data": "0x…", "message": …}
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return decode_revert(data, abi, context=context)
        # A revert with a string reason that web3 already decoded, or none at all.
        reason = str(getattr(exc, "message", None) or exc or "execution reverted")
        return ChainRevertError("Error", {"reason": reason}, f"{reason} (in {context})")


# The gas limit of a contract call on eth-tester: above any call of ours (a chunk of 400
# trades takes about 2.3M), below the block's limit.
TESTER_CALL_GAS = 6_000_000


class EthTesterChain(ChainConnection):
    """An in-process chain (eth-tester on py-evm): every transaction mined in its own block."""

    # web3's eth-tester provider raises eth-tester's own TransactionFailed on a revert rather
    # than web3's ContractLogicError, with the revert data only in its exception chain.
    _revert_types = (ContractLogicError, TransactionFailed)

    def __init__(self, *, receipt_timeout: float = 30.0) -> None:
        self.provider = EthereumTesterProvider()
        tester = self.provider.ethereum_tester
        assert tester is not None  # the provider always creates one when given none
        self.tester: EthereumTester = tester
        super().__init__(Web3(self.provider), receipt_timeout=receipt_timeout)

    def funded_account(self, index: int = 0) -> LocalAccount:
        """Return one of eth-tester's ten prefunded accounts (1,000,000 ETH each)."""
        keys = self.tester.backend.account_keys
        return Account.from_key(keys[index].to_bytes())

    def snapshot(self) -> int:
        """Take a snapshot of the chain state; pass the id to revert_to()."""
        return int(self.tester.take_snapshot())

    def revert_to(self, snapshot: int) -> None:
        """Put the chain back to `snapshot` (blocks after it are dropped)."""
        self.tester.revert_to_snapshot(snapshot)
        self._forget_nonces()

    def set_next_block_timestamp(self, timestamp: int) -> None:
        # eth-tester gets there by mining an empty block at `timestamp - 1`. A time in the
        # past is refused with eth-tester's own error; raise ours, as JsonRpcChain does.
        try:
            self.tester.time_travel(timestamp)
        except EthTesterValidationError as exc:
            raise ChainError(f"cannot set the next block's time to {timestamp}: {exc}") from exc

    def _estimate_gas(self, sender: str, call: ContractFunction | ContractConstructor | None,
                      to: str | None, value: int, errors_abi: ABIEntries, label: str) -> int:
        # py-evm estimates by a binary search of a dozen EVM runs, most of the cost of a send
        # here. One call finds a revert as well, and gas is paid as used, not as limited, so a
        # contract call gets the limit a real node's estimate never exceeds for our calls.
        if not isinstance(call, ContractFunction):
            return super()._estimate_gas(sender, call, to, value, errors_abi, label)
        # Both reads go to eth-tester directly rather than through web3: web3's middleware and
        # its request and result formatting cost nearly as much as the EVM run of the call,
        # and the call's answer is not wanted, only whether it reverts. The errors are the
        # same: web3's eth-tester provider re-raises a TransactionFailed with the original
        # one as its context, and _as_revert finds the revert data in either.
        if int(self.tester.get_balance(sender)) <= value:
            raise ChainError(f"{label}: the node refused the transaction from {sender} "
                             "(is the account funded?): it holds nothing to pay gas with")
        # The call data as web3 encodes it for call() and build_transaction().
        check = {"from": sender, "to": call.address, "value": value,
                 "data": call._encode_transaction_data()}
        try:
            self.tester.call(check, "pending")
        except self._revert_types as exc:
            raise self._as_revert(exc, errors_abi, label) from exc
        return TESTER_CALL_GAS

    def _as_revert(self, exc: Exception, abi: ABIEntries, context: str) -> ChainRevertError:
        data = _tester_revert_data(exc)
        if data is not None:
            return decode_revert(data, abi, context=context)
        reason = str(exc).removeprefix("execution reverted: ") or "execution reverted"
        return ChainRevertError("Error", {"reason": reason}, f"reverted: {reason} (in {context})")


class JsonRpcChain(ChainConnection):
    """A chain node over HTTP JSON-RPC (anvil in development, a real node in production)."""

    # Estimate on top of this sender's not yet mined transactions (nodes with block times).
    _estimate_block = "pending"

    def __init__(self, url: str, *, receipt_timeout: float = 30.0,
                 request_timeout: float = 10.0) -> None:
        self.url = url
        # Few, quick retries: a dead node should be reported in well under a second.
        provider = HTTPProvider(
            url,
            request_kwargs={"timeout": request_timeout},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(ConnectionError, requests.ConnectionError, requests.Timeout),
                retries=3, backoff_factor=0.1,
            ),
        )
        super().__init__(Web3(provider), receipt_timeout=receipt_timeout)
        self.chain_id()  # fail now, with the URL, rather than at the first transaction

    def set_next_block_timestamp(self, timestamp: int) -> None:
        # anvil and hardhat both answer this development method.
        with self.guard():
            response = self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        if "error" in response:
            raise ChainError(f"the node refused evm_setNextBlockTimestamp: {response['error']}")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except (requests.ConnectionError, requests.Timeout, ProviderConnectionError,
                ConnectionError) as exc:
            raise ChainUnavailableError(
                f"the chain node at {self.url} does not answer ({type(exc).__name__}); "
                "start it (e.g. anvil) or fix the chain URL in the configuration"
            ) from exc


def connect(url: str, *, receipt_timeout: float = 30.0) -> ChainConnection:
    """Open a chain connection: "eth-tester" for the in-process chain, or an http(s) URL."""
    if url == "eth-tester":
        return EthTesterChain(receipt_timeout=receipt_timeout)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        return JsonRpcChain(url, receipt_timeout=receipt_timeout)
    if scheme in ("ws", "wss"):
        # web3 8 only has an asyncio WebSocket provider; the adapter is synchronous.
        raise ValueError(f"chain URL {url!r}: use the node's http(s) endpoint; "
                         "WebSocket is not supported by the synchronous adapter")
    raise ValueError(f"chain URL {url!r} is neither 'eth-tester' nor an http(s) URL")


def _abi_of(call: ContractFunction | ContractConstructor | None) -> list[Mapping[str, Any]]:
    if isinstance(call, ContractFunction):
        return list(call.contract_abi or ())
    if isinstance(call, ContractConstructor):
        return list(call.abi or ())
    return []


def _label(call: ContractFunction | ContractConstructor | None, to: str | None) -> str:
    if isinstance(call, ContractFunction):
        return str(call.fn_name)
    if isinstance(call, ContractConstructor):
        return "deployment"
    return f"transfer to {to}"


def _tester_revert_data(exc: BaseException) -> bytes | None:
    """Dig the raw revert data out of eth-tester's chain of wrapped exceptions."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is two or three deep; bound it all the same
        if seen is None:
            break
        first = seen.args[0] if seen.args else None
        if isinstance(first, bytes):
            return first
        if isinstance(first, str):
            # Some paths only keep the bytes' repr, e.g. "execution reverted: b'\\x93Y…'".
            text = first.removeprefix("execution reverted: ")
            if text.startswith(("b'", 'b"')):
                with contextlib.suppress(ValueError, SyntaxError):
                    value = ast.literal_eval(text)
                    if isinstance(value, bytes):
                        return value
        seen = seen.__cause__ or seen.__context__
    return None


def _is_nonce_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _NONCE_ERRORS)
