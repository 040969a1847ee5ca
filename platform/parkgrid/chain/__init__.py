"""Chain adapter: connections, the CapacityMarket client, artefacts and a local anvil node."""

from .anvil import AnvilNode, free_port
from .artefacts import load_artefact
from .connection import (
    ANVIL_DEFAULT_KEY,
    ChainConnection,
    EthTesterChain,
    JsonRpcChain,
    Receipt,
    connect,
)
from .errors import (
    ChainError,
    ChainResetError,
    ChainRevertError,
    ChainTimeoutError,
    ChainUnavailableError,
)
from .market import (
    SETTLEMENT_KINDS,
    BatchRecord,
    CapacityMarket,
    DayRecord,
    OrderRecord,
    RunRecord,
    SettlementEvent,
    SettlementRunRecord,
    TradeEvent,
    enterprise_key,
)

__all__ = [
    "ANVIL_DEFAULT_KEY",
    "AnvilNode",
    "BatchRecord",
    "CapacityMarket",
    "ChainConnection",
    "ChainError",
    "ChainResetError",
    "ChainRevertError",
    "ChainTimeoutError",
    "ChainUnavailableError",
    "DayRecord",
    "EthTesterChain",
    "JsonRpcChain",
    "OrderRecord",
    "RunRecord",
    "SETTLEMENT_KINDS",
    "SettlementEvent",
    "SettlementRunRecord",
    "TradeEvent",
    "Receipt",
    "connect",
    "enterprise_key",
    "free_port",
    "load_artefact",
]
