// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/**
 * @title CapacityMarket
 * @notice Tamper-evident record of a capacity-right market in an industrial park: market
 * days with their gate closure, enterprises' orders (sell listings and buy bids) with their
 * amendments and cancellations, the clearing results of each day, and the settlement runs
 * of each delivery day and month.
 *
 * The platform keeps the full orders and results off chain; this contract keeps hashes of
 * them, who signed them and the blocks in which they were recorded, and it enforces the
 * market's timetable: orders change only before a day's gate closure, clearing results are
 * recorded only after it. Each enterprise signs its own orders with a chain account that a
 * registrar has bound to it, so the platform operator cannot place, amend or cancel an order
 * on an enterprise's behalf.
 *
 * Orders arrive either one by one ({recordOrder}, {amendOrder}, {cancelOrder}: kept in
 * storage, the contract enforces the order rules) or in batches ({recordOrderBatch}: kept in
 * events only, for a fraction of the gas; an auditor applies the order rules to the events).
 * An order id belongs to one of the two paths: the contract does not look into batches when
 * it judges a single order, nor into storage when it records a batch.
 *
 * A day is cleared in runs numbered from 1. Clearing staff record the run's trades (events
 * only; the contract counts them and remembers the blocks that hold them), then publish the
 * run's result root once, committing to the trade count. A published run can be voided, by
 * its number and with a reason, which opens the next run of the same day for re-clearing.
 *
 * After delivery, each settlement run of a day (initial, final, re-runs) or of a month (the
 * monthly roll-up) is anchored once ({publishSettlement}): the Merkle root of the metering
 * data used, the hash of the deviation-rule version, the Merkle root of the statement lines,
 * the hash of the canonical result file and the number of lines. Settlement runs are
 * numbered from 1 per period and never replace each other; the latest is the one in force.
 *
 * Roles:
 * - `DEFAULT_ADMIN_ROLE`: the platform operator (the deployer); grants and revokes roles.
 * - `REGISTRAR_ROLE`: binds enterprise accounts.
 * - `MARKET_OPERATOR_ROLE`: opens market days and sets their gate closure.
 * - `CLEARING_ROLE`: settlement staff; record trades, publish and void clearing results,
 *   publish settlement runs.
 */
contract CapacityMarket is AccessControl {
    /// @notice Role allowed to bind chain accounts to enterprises.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice Role of settlement staff: records trades, publishes and voids clearing results,
    /// publishes settlement runs.
    bytes32 public constant CLEARING_ROLE = keccak256("CLEARING_ROLE");

    /// @notice Role allowed to open market days (the platform operator).
    bytes32 public constant MARKET_OPERATOR_ROLE = keccak256("MARKET_OPERATOR_ROLE");

    uint8 private constant _SIDE_BUY = 1; // 0 = sell
    uint8 private constant _ACTION_CANCEL = 2; // 0 = new, 1 = amend
    uint8 private constant _KIND_RERUN = 3; // 1 = initial, 2 = final: the day kinds end here
    uint8 private constant _KIND_MONTHLY = 4;

    // One slot per enterprise: its current account and a small index, so an order can refer
    // to its enterprise with 8 bytes instead of a full 32-byte slot.
    struct Enterprise {
        address account;
        uint64 index;
    }

    // An order takes two slots: one packed slot with everything but the hash, and the hash.
    // The packed slot is read first for the replay guard, which makes its write a warm one.
    struct Order {
        uint64 enterpriseIndex;
        uint32 deliveryDay;
        uint8 side;
        uint16 version;
        bool cancelled;
        uint64 blockNumber; // of the latest action; zero means "never recorded"
        bytes32 contentHash;
    }

    // A market day: zero gate closure means "not open".
    struct MarketDay {
        uint64 gateClosure;
        uint32 currentRun;
    }

    // One clearing run of a day. The first slot changes with every chunk of trades (count
    // and latest block in one write); the root is written once, on publication.
    struct ClearingRun {
        uint32 tradeCount;
        bool published;
        bool voided;
        uint64 lastTradeBlock;
        uint64 publishedBlock;
        uint64 voidedBlock;
        bytes32 resultRoot;
    }

    // A batch of order actions: only what the replay guard and a later lookup need.
    struct Batch {
        uint64 blockNumber;
        uint32 count;
    }

    /**
     * @notice One published settlement run of a delivery day or month, as {settlementRun}
     * returns it; all zero for a run never published.
     * @dev Six slots: the four hashes, the kind, and the line count, block and publisher
     * packed in one.
     * @param kind 1 initial, 2 final, 3 re-run (of a day), 4 monthly (of a month).
     * @param meteringRoot Merkle root of the metering data used (zero only for a monthly run,
     * which works from the days' results).
     * @param ruleHash Hash of the deviation-rule version applied.
     * @param statementsRoot Merkle root of the run's statement lines.
     * @param resultHash Hash of the run's canonical result file, kept off chain.
     * @param lineCount The number of statement lines.
     * @param blockNumber The block of its {SettlementPublished} event.
     * @param publisher The clearing account that published it.
     */
    struct SettlementRun {
        uint8 kind;
        bytes32 meteringRoot;
        bytes32 ruleHash;
        bytes32 statementsRoot;
        bytes32 resultHash;
        uint32 lineCount;
        uint64 blockNumber;
        address publisher;
    }

    /**
     * @notice One item of {recordOrderBatch}.
     * @param orderId The order the item acts on.
     * @param action 0 new, 1 amend, 2 cancel.
     * @param side 0 sell, 1 buy.
     * @param contentHash Hash of the order's content after the action.
     */
    struct OrderAction {
        bytes32 orderId;
        uint8 action;
        uint8 side;
        bytes32 contentHash;
    }

    /**
     * @notice One trade of {recordTrades}.
     * @param orderId The order the trade fills.
     * @param quantity Quantity traded, in 0.1 kVA·h.
     * @param amountFen Money in fen: positive when the enterprise pays, negative when it
     * receives.
     * @param detailHash Hash of the trade's per-period detail.
     */
    struct Trade {
        bytes32 orderId;
        uint64 quantity;
        int64 amountFen;
        bytes32 detailHash;
    }

    mapping(bytes32 enterpriseId => Enterprise) private _enterprises;
    mapping(uint64 index => bytes32 enterpriseId) private _enterpriseIds;
    mapping(address account => bytes32 enterpriseId) private _enterpriseOf;
    mapping(bytes32 orderId => Order) private _orders;
    mapping(bytes32 batchId => Batch) private _batches;
    mapping(uint32 deliveryDay => MarketDay) private _days;
    mapping(uint32 deliveryDay => mapping(uint32 runNumber => ClearingRun)) private _runs;
    // The distinct blocks holding a run's TradeRecorded events, in order: an auditor reads
    // exactly these blocks instead of scanning the chain.
    mapping(uint32 deliveryDay => mapping(uint32 runNumber => uint64[])) private _tradeBlocks;
    uint64 private _enterpriseCount;
    mapping(uint32 periodId => uint32) private _settlementRunCounts;
    mapping(uint32 periodId => mapping(uint32 runNumber => SettlementRun)) private
        _settlementRuns;

    /**
     * @notice Emitted when `account` becomes the account of `enterpriseId`.
     * @param enterpriseId The enterprise's bytes32 id.
     * @param account The account now allowed to record the enterprise's orders.
     * @param previousAccount The account it replaces, or the zero address on first binding.
     */
    event EnterpriseRegistered(
        bytes32 indexed enterpriseId, address indexed account, address previousAccount
    );

    /**
     * @notice Emitted when a market day is opened for orders.
     * @param deliveryDay The delivery day as YYYYMMDD.
     * @param gateClosure Unix time from which the day's orders are frozen.
     * @param operator The market operator who opened it.
     */
    event DayOpened(uint32 indexed deliveryDay, uint64 gateClosure, address operator);

    /**
     * @notice Emitted when an order is recorded on its own (version 1). The account that
     * signed it is the transaction's sender, the current account of `enterpriseId` then.
     * @dev Lean on purpose, for gas: the enterprise is data, not a topic, and the signer is
     * not repeated. Filter by enterprise with the stored order or the off-chain index.
     * @param orderId The platform's bytes32 id of the order.
     * @param enterpriseId The enterprise placing it.
     * @param deliveryDay The delivery day as YYYYMMDD.
     * @param side 0 for a sell listing, 1 for a buy bid.
     * @param contentHash Hash of the order's canonical content, kept off chain.
     */
    event OrderRecorded(
        bytes32 indexed orderId,
        bytes32 enterpriseId,
        uint32 indexed deliveryDay,
        uint8 side,
        bytes32 contentHash
    );

    /**
     * @notice Emitted when an order recorded with {recordOrder} is amended.
     * @param orderId The order.
     * @param enterpriseId The enterprise that placed it.
     * @param deliveryDay The order's delivery day.
     * @param version The order's new version (2 for the first amendment).
     * @param contentHash Hash of the order's new canonical content.
     */
    event OrderAmended(
        bytes32 indexed orderId,
        bytes32 indexed enterpriseId,
        uint32 indexed deliveryDay,
        uint16 version,
        bytes32 contentHash
    );

    /**
     * @notice Emitted when an order recorded with {recordOrder} is cancelled.
     * @param orderId The order.
     * @param enterpriseId The enterprise that placed it.
     * @param deliveryDay The order's delivery day.
     * @param version The version that was cancelled.
     */
    event OrderCancelled(
        bytes32 indexed orderId,
        bytes32 indexed enterpriseId,
        uint32 indexed deliveryDay,
        uint16 version
    );

    /**
     * @notice Emitted for each item of a batch, in the batch's order, before
     * {OrderBatchRecorded}.
     * @param batchId The batch.
     * @param orderId The order the item acts on.
     * @param action 0 new, 1 amend, 2 cancel.
     * @param side 0 sell, 1 buy (the order's side).
     * @param contentHash Hash of the order's content after the action (free for a cancel).
     */
    event OrderActionBatched(
        bytes32 indexed batchId,
        bytes32 indexed orderId,
        uint8 action,
        uint8 side,
        bytes32 contentHash
    );

    /**
     * @notice Emitted once per batch, after its items' {OrderActionBatched} events.
     * @param batchId The batch.
     * @param enterpriseId The enterprise whose orders the batch holds.
     * @param deliveryDay The delivery day of all its orders.
     * @param count The number of items.
     * @param account The enterprise account that signed the batch.
     */
    event OrderBatchRecorded(
        bytes32 indexed batchId,
        bytes32 indexed enterpriseId,
        uint32 indexed deliveryDay,
        uint32 count,
        address account
    );

    /**
     * @notice Emitted for each trade of a clearing run.
     * @param deliveryDay The delivery day cleared.
     * @param runNumber The clearing run (1 for the first).
     * @param orderId The order the trade fills.
     * @param quantity Quantity traded, in 0.1 kVA·h.
     * @param amountFen Money in fen: positive when the enterprise pays, negative when it
     * receives.
     * @param detailHash Hash of the trade's per-period detail, kept off chain.
     */
    event TradeRecorded(
        uint32 indexed deliveryDay,
        uint32 indexed runNumber,
        bytes32 indexed orderId,
        uint64 quantity,
        int64 amountFen,
        bytes32 detailHash
    );

    /**
     * @notice Emitted when a clearing run's result is published.
     * @param deliveryDay The delivery day cleared.
     * @param runNumber The clearing run.
     * @param resultRoot Root (hash) of the run's full result, kept off chain.
     * @param tradeCount The number of trades recorded for the run.
     * @param publisher The clearing account that published it.
     */
    event ClearingPublished(
        uint32 indexed deliveryDay,
        uint32 runNumber,
        bytes32 resultRoot,
        uint32 tradeCount,
        address publisher
    );

    /**
     * @notice Emitted when a published clearing run is voided; the day's next run opens.
     * @param deliveryDay The delivery day.
     * @param runNumber The voided run.
     * @param resultRoot The voided run's result root.
     * @param reason Why it was voided.
     * @param by The clearing account that voided it.
     */
    event ClearingVoided(
        uint32 indexed deliveryDay,
        uint32 runNumber,
        bytes32 resultRoot,
        string reason,
        address by
    );

    /**
     * @notice Emitted when a settlement run is published.
     * @param periodId The delivery day as YYYYMMDD, or the month as YYYYMM00.
     * @param runNumber The period's settlement run (1 for the first).
     * @param kind 1 initial, 2 final, 3 re-run, 4 monthly.
     * @param meteringRoot Merkle root of the metering data used (zero for a monthly run
     * without one).
     * @param ruleHash Hash of the deviation-rule version applied.
     * @param statementsRoot Merkle root of the run's statement lines.
     * @param resultHash Hash of the run's canonical result file, kept off chain.
     * @param lineCount The number of statement lines.
     * @param publisher The clearing account that published it.
     */
    event SettlementPublished(
        uint32 indexed periodId,
        uint32 indexed runNumber,
        uint8 kind,
        bytes32 meteringRoot,
        bytes32 ruleHash,
        bytes32 statementsRoot,
        bytes32 resultHash,
        uint32 lineCount,
        address publisher
    );

    /**
     * @notice The enterprise id or account given to {registerEnterprise} is zero.
     */
    error CapacityMarketInvalidEnterprise(bytes32 enterpriseId, address account);

    /**
     * @notice `account` is already bound to `enterpriseId`; an account serves one
     * enterprise for good, so its past records stay unambiguous.
     */
    error CapacityMarketAccountAlreadyRegistered(address account, bytes32 enterpriseId);

    /**
     * @notice `account` is not the current account registered for `enterpriseId`.
     */
    error CapacityMarketNotEnterpriseAccount(bytes32 enterpriseId, address account);

    /**
     * @notice `deliveryDay` is not a plausible YYYYMMDD date.
     */
    error CapacityMarketInvalidDeliveryDay(uint32 deliveryDay);

    /**
     * @notice `gateClosure` is not a Unix time in seconds after the current block.
     */
    error CapacityMarketInvalidGateClosure(uint32 deliveryDay, uint64 gateClosure);

    /**
     * @notice `deliveryDay` was opened before, with `gateClosure`; a day is opened once.
     */
    error CapacityMarketDayAlreadyOpen(uint32 deliveryDay, uint64 gateClosure);

    /**
     * @notice `deliveryDay` has not been opened by a market operator.
     */
    error CapacityMarketDayNotOpen(uint32 deliveryDay);

    /**
     * @notice Orders of `deliveryDay` are frozen: the block's time is at or after the gate.
     */
    error CapacityMarketGateClosed(uint32 deliveryDay, uint64 gateClosure, uint64 blockTimestamp);

    /**
     * @notice `deliveryDay` cannot be cleared yet: the block's time is before the gate.
     */
    error CapacityMarketGateOpen(uint32 deliveryDay, uint64 gateClosure, uint64 blockTimestamp);

    /**
     * @notice The order id or content hash is zero.
     */
    error CapacityMarketInvalidOrder(bytes32 orderId, bytes32 contentHash);

    /**
     * @notice `side` is neither 0 (sell) nor 1 (buy).
     */
    error CapacityMarketInvalidSide(uint8 side);

    /**
     * @notice `orderId` has already been recorded; an order is recorded once.
     */
    error CapacityMarketOrderExists(bytes32 orderId);

    /**
     * @notice `orderId` was never recorded with {recordOrder}.
     */
    error CapacityMarketUnknownOrder(bytes32 orderId);

    /**
     * @notice `orderId` is cancelled; a cancelled order cannot change any more.
     */
    error CapacityMarketOrderCancelled(bytes32 orderId);

    /**
     * @notice `orderId` has reached the highest version a record can hold.
     */
    error CapacityMarketVersionLimit(bytes32 orderId);

    /**
     * @notice The batch id is zero or the batch has no items.
     */
    error CapacityMarketInvalidBatch(bytes32 batchId, uint256 count);

    /**
     * @notice `batchId` has already been recorded; a batch is recorded once.
     */
    error CapacityMarketBatchExists(bytes32 batchId);

    /**
     * @notice Item `index` of a batch has a zero order id, an unknown action or side, or
     * (for a new order or an amendment) a zero content hash.
     */
    error CapacityMarketInvalidOrderAction(uint256 index);

    /**
     * @notice `runNumber` is not the day's current clearing run `currentRun`.
     */
    error CapacityMarketWrongRun(uint32 deliveryDay, uint32 currentRun, uint32 runNumber);

    /**
     * @notice Run `runNumber` of `deliveryDay` is published; its result is written once.
     */
    error CapacityMarketAlreadyPublished(uint32 deliveryDay, uint32 runNumber);

    /**
     * @notice The current run `runNumber` of `deliveryDay` is not published, so there is
     * nothing to void.
     */
    error CapacityMarketNotPublished(uint32 deliveryDay, uint32 runNumber);

    /**
     * @notice A call to {recordTrades} has no trades.
     */
    error CapacityMarketNoTrades(uint32 deliveryDay, uint32 runNumber);

    /**
     * @notice The trade count given to {publishClearing} is not the number recorded.
     */
    error CapacityMarketTradeCountMismatch(
        uint32 deliveryDay, uint32 runNumber, uint32 recorded, uint32 given
    );

    /**
     * @notice The result root given to {publishClearing} is zero.
     */
    error CapacityMarketInvalidResultRoot(uint32 deliveryDay, uint32 runNumber);

    /**
     * @notice {voidClearing} needs a non-empty reason.
     */
    error CapacityMarketReasonRequired(uint32 deliveryDay);

    /**
     * @notice `periodId` is neither a day YYYYMMDD nor a month YYYYMM00 of a year from 2000.
     */
    error CapacityMarketInvalidPeriod(uint32 periodId);

    /**
     * @notice `kind` is not 1 (initial), 2 (final) or 3 (re-run) for a day, nor 4 (monthly)
     * for a month.
     */
    error CapacityMarketInvalidSettlementKind(uint32 periodId, uint8 kind);

    /**
     * @notice `runNumber` is not the next settlement run `expectedRun` of `periodId`; a
     * lower number means that run is already published.
     */
    error CapacityMarketWrongSettlementRun(uint32 periodId, uint32 expectedRun, uint32 runNumber);

    /**
     * @notice A root or hash given to {publishSettlement} is zero (the metering root may be
     * zero for a monthly run only).
     */
    error CapacityMarketInvalidSettlementHash(uint32 periodId, uint32 runNumber);

    /**
     * @notice Makes the deployer the platform operator (`DEFAULT_ADMIN_ROLE`).
     */
    constructor() {
        _grantRole(DEFAULT_ADMIN_ROLE, _msgSender());
    }

    // ---------------------------------------------------------------------- enterprises

    /**
     * @notice Binds `account` to `enterpriseId`, replacing the enterprise's previous
     * account if it had one (the previous account can no longer act for the enterprise).
     * @dev Only `REGISTRAR_ROLE`. Reverts with {CapacityMarketAccountAlreadyRegistered} when
     * `account` was ever bound to an enterprise. Emits {EnterpriseRegistered}.
     * @param enterpriseId The enterprise's bytes32 id (non-zero).
     * @param account The enterprise's chain account (non-zero).
     */
    function registerEnterprise(bytes32 enterpriseId, address account)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        if (enterpriseId == bytes32(0) || account == address(0)) {
            revert CapacityMarketInvalidEnterprise(enterpriseId, account);
        }
        bytes32 bound = _enterpriseOf[account];
        if (bound != bytes32(0)) {
            revert CapacityMarketAccountAlreadyRegistered(account, bound);
        }
        Enterprise storage enterprise = _enterprises[enterpriseId];
        address previous = enterprise.account;
        if (enterprise.index == 0) {
            uint64 index = ++_enterpriseCount;
            enterprise.index = index;
            _enterpriseIds[index] = enterpriseId;
        }
        enterprise.account = account;
        _enterpriseOf[account] = enterpriseId;
        emit EnterpriseRegistered(enterpriseId, account, previous);
    }

    // ---------------------------------------------------------------------- market days

    /**
     * @notice Opens `deliveryDay` for orders until `gateClosure`, and for clearing after it.
     * @dev Only `MARKET_OPERATOR_ROLE`. A day is opened once
     * ({CapacityMarketDayAlreadyOpen}); the gate must lie after the current block and be a
     * Unix time in seconds (at most 2^32 - 1, which catches milliseconds). Emits {DayOpened}.
     * @param deliveryDay The delivery day as YYYYMMDD.
     * @param gateClosure Unix time (seconds) from which orders of the day are frozen: a
     * block with `block.timestamp >= gateClosure` refuses them and accepts clearing records.
     */
    function openDay(uint32 deliveryDay, uint64 gateClosure)
        external
        onlyRole(MARKET_OPERATOR_ROLE)
    {
        if (!_isPlausibleDay(deliveryDay)) {
            revert CapacityMarketInvalidDeliveryDay(deliveryDay);
        }
        MarketDay storage day_ = _days[deliveryDay];
        if (day_.gateClosure != 0) {
            revert CapacityMarketDayAlreadyOpen(deliveryDay, day_.gateClosure);
        }
        if (gateClosure <= block.timestamp || gateClosure > type(uint32).max) {
            revert CapacityMarketInvalidGateClosure(deliveryDay, gateClosure);
        }
        day_.gateClosure = gateClosure;
        day_.currentRun = 1;
        emit DayOpened(deliveryDay, gateClosure, _msgSender());
    }

    // ---------------------------------------------------------------------- orders

    /**
     * @notice Records a new order of `enterpriseId`, signed by the enterprise's account.
     * @dev Reverts with {CapacityMarketNotEnterpriseAccount} unless the caller is the
     * current account of `enterpriseId`; with {CapacityMarketDayNotOpen} or
     * {CapacityMarketGateClosed} unless the day is open and its gate not reached; with
     * {CapacityMarketOrderExists} when `orderId` was recorded before. Emits {OrderRecorded}.
     * @param orderId The platform's bytes32 id of the order (non-zero).
     * @param enterpriseId The enterprise placing it.
     * @param deliveryDay The delivery day as YYYYMMDD (an open day).
     * @param side 0 for a sell listing, 1 for a buy bid.
     * @param contentHash Hash of the order's canonical content (non-zero).
     */
    function recordOrder(
        bytes32 orderId,
        bytes32 enterpriseId,
        uint32 deliveryDay,
        uint8 side,
        bytes32 contentHash
    ) external {
        address account = _msgSender();
        uint64 enterpriseIndex = _requireAccountOf(enterpriseId, account);
        _requireGateOpen(deliveryDay);
        if (orderId == bytes32(0) || contentHash == bytes32(0)) {
            revert CapacityMarketInvalidOrder(orderId, contentHash);
        }
        if (side > _SIDE_BUY) {
            revert CapacityMarketInvalidSide(side);
        }
        Order storage order_ = _orders[orderId];
        if (order_.blockNumber != 0) {
            revert CapacityMarketOrderExists(orderId);
        }
        order_.enterpriseIndex = enterpriseIndex;
        order_.deliveryDay = deliveryDay;
        order_.side = side;
        order_.version = 1;
        order_.blockNumber = uint64(block.number);
        order_.contentHash = contentHash;
        emit OrderRecorded(orderId, enterpriseId, deliveryDay, side, contentHash);
    }

    /**
     * @notice Replaces the content of an order recorded with {recordOrder}; its version
     * goes up by one.
     * @dev Reverts with {CapacityMarketUnknownOrder}, {CapacityMarketNotEnterpriseAccount}
     * (caller is not the current account of the order's enterprise),
     * {CapacityMarketOrderCancelled} or {CapacityMarketGateClosed}. Emits {OrderAmended}.
     * @param orderId The order.
     * @param contentHash Hash of the order's new canonical content (non-zero).
     */
    function amendOrder(bytes32 orderId, bytes32 contentHash) external {
        (Order storage order_, bytes32 enterpriseId) = _changeableOrder(orderId);
        if (contentHash == bytes32(0)) {
            revert CapacityMarketInvalidOrder(orderId, contentHash);
        }
        uint16 version = order_.version;
        if (version == type(uint16).max) {
            revert CapacityMarketVersionLimit(orderId);
        }
        version += 1;
        order_.version = version;
        order_.blockNumber = uint64(block.number);
        order_.contentHash = contentHash;
        emit OrderAmended(orderId, enterpriseId, order_.deliveryDay, version, contentHash);
    }

    /**
     * @notice Cancels an order recorded with {recordOrder}; it cannot change afterwards.
     * @dev Same checks as {amendOrder}. Keeps the version and content hash of the version
     * cancelled. Emits {OrderCancelled}.
     * @param orderId The order.
     */
    function cancelOrder(bytes32 orderId) external {
        (Order storage order_, bytes32 enterpriseId) = _changeableOrder(orderId);
        order_.cancelled = true;
        order_.blockNumber = uint64(block.number);
        emit OrderCancelled(orderId, enterpriseId, order_.deliveryDay, order_.version);
    }

    /**
     * @notice Records a batch of order actions of one enterprise for one day, in events only.
     * @dev The sender, the day and its gate are checked once, as in {recordOrder}; the
     * replay guard is on `batchId` alone, and the only storage written is the batch's block
     * number and item count. Each item is checked for shape only (non-zero order id, action
     * 0 new / 1 amend / 2 cancel, side 0 / 1, non-zero content hash unless a cancel;
     * otherwise {CapacityMarketInvalidOrderAction}) and emitted as {OrderActionBatched}, in
     * order, followed by one {OrderBatchRecorded}.
     *
     * Items are NOT kept in storage and are not checked against each other or against other
     * batches or stored orders. The auditor applies the order rules from the events, in
     * chain order (block, then log index): an order id is new exactly once and before any
     * amendment or cancellation of it; nothing follows a cancellation; an order's side never
     * changes; an order id used here is not also used with {recordOrder}. Items breaking a
     * rule are void. Every item was signed by the enterprise's account before the gate.
     * @param batchId The platform's bytes32 id of the batch (non-zero).
     * @param enterpriseId The enterprise whose orders these are.
     * @param deliveryDay The delivery day of every order in the batch (an open day).
     * @param actions The items, at least one.
     */
    function recordOrderBatch(
        bytes32 batchId,
        bytes32 enterpriseId,
        uint32 deliveryDay,
        OrderAction[] calldata actions
    ) external {
        address account = _msgSender();
        _requireAccountOf(enterpriseId, account);
        _requireGateOpen(deliveryDay);
        uint256 count = actions.length;
        // The count is stored in 32 bits; no transaction fits more items than that.
        if (batchId == bytes32(0) || count == 0 || count > type(uint32).max) {
            revert CapacityMarketInvalidBatch(batchId, count);
        }
        Batch storage batch_ = _batches[batchId];
        if (batch_.blockNumber != 0) {
            revert CapacityMarketBatchExists(batchId);
        }
        batch_.blockNumber = uint64(block.number);
        batch_.count = uint32(count);
        for (uint256 i = 0; i < count; ++i) {
            OrderAction calldata item = actions[i];
            uint8 action = item.action;
            if (
                item.orderId == bytes32(0) || action > _ACTION_CANCEL || item.side > _SIDE_BUY
                    || (action != _ACTION_CANCEL && item.contentHash == bytes32(0))
            ) {
                revert CapacityMarketInvalidOrderAction(i);
            }
            emit OrderActionBatched(batchId, item.orderId, action, item.side, item.contentHash);
        }
        emit OrderBatchRecorded(batchId, enterpriseId, deliveryDay, uint32(count), account);
    }

    // ---------------------------------------------------------------------- clearing

    /**
     * @notice Records trades of the current clearing run of `deliveryDay`, in events only;
     * a run's trades may take several calls.
     * @dev Only `CLEARING_ROLE`, after the day's gate ({CapacityMarketGateOpen} before it),
     * for the day's current run ({CapacityMarketWrongRun}) while it is unpublished
     * ({CapacityMarketAlreadyPublished}). Trades are not checked against orders: batched
     * orders live in events only. Adds to the run's trade count and notes the block, so
     * {runTradeBlocks} lists every block holding the run's {TradeRecorded} events.
     * @param deliveryDay The delivery day cleared.
     * @param runNumber The day's current run.
     * @param trades The trades, at least one.
     */
    function recordTrades(uint32 deliveryDay, uint32 runNumber, Trade[] calldata trades)
        external
        onlyRole(CLEARING_ROLE)
    {
        ClearingRun storage run_ = _openRun(deliveryDay, runNumber);
        uint256 count = trades.length;
        if (count == 0) {
            revert CapacityMarketNoTrades(deliveryDay, runNumber);
        }
        uint64 blockNumber = uint64(block.number);
        if (run_.lastTradeBlock != blockNumber) {
            run_.lastTradeBlock = blockNumber;
            _tradeBlocks[deliveryDay][runNumber].push(blockNumber);
        }
        // Checked addition: a run never holds 2^32 trades; if it did, this reverts.
        run_.tradeCount += uint32(count);
        for (uint256 i = 0; i < count; ++i) {
            Trade calldata trade = trades[i];
            emit TradeRecorded(
                deliveryDay,
                runNumber,
                trade.orderId,
                trade.quantity,
                trade.amountFen,
                trade.detailHash
            );
        }
    }

    /**
     * @notice Publishes the result of the current clearing run of `deliveryDay`, once.
     * @dev Only `CLEARING_ROLE`, after the day's gate. Reverts with
     * {CapacityMarketAlreadyPublished} for a run published before (voided or not),
     * {CapacityMarketWrongRun} for any run but the current one, and
     * {CapacityMarketTradeCountMismatch} unless `tradeCount` is the number of trades
     * recorded for the run. Emits {ClearingPublished}.
     * @param deliveryDay The delivery day cleared.
     * @param runNumber The day's current run.
     * @param resultRoot Root (hash) of the run's full result (non-zero).
     * @param tradeCount The number of trades recorded for the run (may be zero).
     */
    function publishClearing(
        uint32 deliveryDay,
        uint32 runNumber,
        bytes32 resultRoot,
        uint32 tradeCount
    ) external onlyRole(CLEARING_ROLE) {
        ClearingRun storage run_ = _openRun(deliveryDay, runNumber);
        if (resultRoot == bytes32(0)) {
            revert CapacityMarketInvalidResultRoot(deliveryDay, runNumber);
        }
        uint32 recorded = run_.tradeCount;
        if (tradeCount != recorded) {
            revert CapacityMarketTradeCountMismatch(deliveryDay, runNumber, recorded, tradeCount);
        }
        run_.published = true;
        run_.publishedBlock = uint64(block.number);
        run_.resultRoot = resultRoot;
        emit ClearingPublished(deliveryDay, runNumber, resultRoot, tradeCount, _msgSender());
    }

    /**
     * @notice Voids the published result of run `runNumber` of `deliveryDay`, which must be
     * the day's current run, and opens the next run, so the day can be cleared again.
     * @dev Only `CLEARING_ROLE`. Reverts with {CapacityMarketDayNotOpen},
     * {CapacityMarketReasonRequired} for an empty reason, {CapacityMarketWrongRun} unless
     * `runNumber` is the day's current run (so a delayed or retried void never voids a later
     * run), and {CapacityMarketNotPublished} when that run is not published. The voided run
     * keeps its trades, root and count. Emits {ClearingVoided}.
     * @param deliveryDay The delivery day.
     * @param runNumber The run to void: the day's current run.
     * @param reason Why the result is void, for the record (non-empty).
     */
    function voidClearing(uint32 deliveryDay, uint32 runNumber, string calldata reason)
        external
        onlyRole(CLEARING_ROLE)
    {
        MarketDay storage day_ = _days[deliveryDay];
        if (day_.gateClosure == 0) {
            revert CapacityMarketDayNotOpen(deliveryDay);
        }
        if (bytes(reason).length == 0) {
            revert CapacityMarketReasonRequired(deliveryDay);
        }
        uint32 currentRun = day_.currentRun;
        if (runNumber != currentRun) {
            revert CapacityMarketWrongRun(deliveryDay, currentRun, runNumber);
        }
        ClearingRun storage run_ = _runs[deliveryDay][runNumber];
        if (!run_.published) {
            revert CapacityMarketNotPublished(deliveryDay, runNumber);
        }
        run_.voided = true;
        run_.voidedBlock = uint64(block.number);
        day_.currentRun = runNumber + 1;
        emit ClearingVoided(deliveryDay, runNumber, run_.resultRoot, reason, _msgSender());
    }

    // ---------------------------------------------------------------------- settlement

    /**
     * @notice Publishes settlement run `runNumber` of a delivery day or a month, once.
     * @dev Only `CLEARING_ROLE`. The period need not be open or cleared on chain: a day
     * without trades is still settled for deviations. Reverts with
     * {CapacityMarketInvalidPeriod} for a `periodId` that is neither a day nor a month,
     * {CapacityMarketInvalidSettlementKind} for a kind that does not fit it,
     * {CapacityMarketWrongSettlementRun} unless `runNumber` is {settlementRunCount} + 1 (so
     * a retried or duplicated submission is refused and names the next number), and
     * {CapacityMarketInvalidSettlementHash} for a zero root or hash. Emits
     * {SettlementPublished}.
     * @param periodId The delivery day as YYYYMMDD, or the month as YYYYMM00 (year 2000 on).
     * @param runNumber The period's next settlement run: 1, 2, ...
     * @param kind 1 initial, 2 final, 3 re-run (day ids only); 4 monthly (month ids only).
     * @param meteringRoot Merkle root of the metering data used (non-zero, except that a
     * monthly run may give zero).
     * @param ruleHash Hash of the deviation-rule version applied (non-zero).
     * @param statementsRoot Merkle root of the run's statement lines (non-zero).
     * @param resultHash Hash of the run's canonical result file (non-zero).
     * @param lineCount The number of statement lines.
     */
    function publishSettlement(
        uint32 periodId,
        uint32 runNumber,
        uint8 kind,
        bytes32 meteringRoot,
        bytes32 ruleHash,
        bytes32 statementsRoot,
        bytes32 resultHash,
        uint32 lineCount
    ) external onlyRole(CLEARING_ROLE) {
        uint32 dayOfMonth = periodId % 100;
        uint32 month = (periodId / 100) % 100;
        if (
            periodId < 20000100 || periodId > 99991231 || month < 1 || month > 12
                || dayOfMonth > 31
        ) {
            revert CapacityMarketInvalidPeriod(periodId);
        }
        bool monthly = dayOfMonth == 0;
        if (monthly ? kind != _KIND_MONTHLY : kind == 0 || kind > _KIND_RERUN) {
            revert CapacityMarketInvalidSettlementKind(periodId, kind);
        }
        uint32 expectedRun = _settlementRunCounts[periodId] + 1;
        if (runNumber != expectedRun) {
            revert CapacityMarketWrongSettlementRun(periodId, expectedRun, runNumber);
        }
        if (
            (meteringRoot == bytes32(0) && !monthly) || ruleHash == bytes32(0)
                || statementsRoot == bytes32(0) || resultHash == bytes32(0)
        ) {
            revert CapacityMarketInvalidSettlementHash(periodId, runNumber);
        }
        _settlementRunCounts[periodId] = runNumber;
        _settlementRuns[periodId][runNumber] = SettlementRun({
            kind: kind,
            meteringRoot: meteringRoot,
            ruleHash: ruleHash,
            statementsRoot: statementsRoot,
            resultHash: resultHash,
            lineCount: lineCount,
            blockNumber: uint64(block.number),
            publisher: _msgSender()
        });
        emit SettlementPublished(
            periodId,
            runNumber,
            kind,
            meteringRoot,
            ruleHash,
            statementsRoot,
            resultHash,
            lineCount,
            _msgSender()
        );
    }

    // ---------------------------------------------------------------------- getters

    /**
     * @notice Returns the current account of `enterpriseId`, or the zero address.
     * @param enterpriseId The enterprise's bytes32 id.
     * @return The account allowed to record the enterprise's orders.
     */
    function accountOf(bytes32 enterpriseId) external view returns (address) {
        return _enterprises[enterpriseId].account;
    }

    /**
     * @notice Returns the enterprise `account` is or was bound to, or zero.
     * @param account A chain account.
     * @return The enterprise's bytes32 id.
     */
    function enterpriseOf(address account) external view returns (bytes32) {
        return _enterpriseOf[account];
    }

    /**
     * @notice Returns a market day and its current clearing run; all zero when not open.
     * @param deliveryDay The delivery day as YYYYMMDD.
     * @return gateClosure Unix time from which orders are frozen (zero: day not open).
     * @return currentRun The clearing run now open or last published (1 until a void).
     * @return published Whether the current run's result is published.
     * @return resultRoot The current run's result root (zero until published).
     * @return tradeCount The number of trades recorded for the current run.
     */
    function day(uint32 deliveryDay)
        external
        view
        returns (
            uint64 gateClosure,
            uint32 currentRun,
            bool published,
            bytes32 resultRoot,
            uint32 tradeCount
        )
    {
        MarketDay storage day_ = _days[deliveryDay];
        ClearingRun storage run_ = _runs[deliveryDay][day_.currentRun];
        return (day_.gateClosure, day_.currentRun, run_.published, run_.resultRoot,
            run_.tradeCount);
    }

    /**
     * @notice Returns the record of one clearing run; all zero for a run never used.
     * @param deliveryDay The delivery day.
     * @param runNumber The run (1 for the first).
     * @return published Whether the run's result was published.
     * @return voided Whether the published result was voided.
     * @return resultRoot The published result root (zero until published).
     * @return tradeCount The number of trades recorded for the run.
     * @return publishedBlock The block of its {ClearingPublished} event, or zero.
     * @return voidedBlock The block of its {ClearingVoided} event, or zero.
     */
    function clearingRun(uint32 deliveryDay, uint32 runNumber)
        external
        view
        returns (
            bool published,
            bool voided,
            bytes32 resultRoot,
            uint32 tradeCount,
            uint64 publishedBlock,
            uint64 voidedBlock
        )
    {
        ClearingRun storage run_ = _runs[deliveryDay][runNumber];
        return (run_.published, run_.voided, run_.resultRoot, run_.tradeCount,
            run_.publishedBlock, run_.voidedBlock);
    }

    /**
     * @notice Returns how many trades a clearing run has and the range of blocks holding
     * them; all zero when it has none.
     * @param deliveryDay The delivery day.
     * @param runNumber The run.
     * @return count The number of {TradeRecorded} events of the run.
     * @return firstBlock The first block holding one of them.
     * @return lastBlock The last block holding one of them.
     */
    function runTrades(uint32 deliveryDay, uint32 runNumber)
        external
        view
        returns (uint32 count, uint64 firstBlock, uint64 lastBlock)
    {
        uint64[] storage blocks = _tradeBlocks[deliveryDay][runNumber];
        if (blocks.length == 0) {
            return (0, 0, 0);
        }
        ClearingRun storage run_ = _runs[deliveryDay][runNumber];
        return (run_.tradeCount, blocks[0], run_.lastTradeBlock);
    }

    /**
     * @notice Returns every block holding a {TradeRecorded} event of a clearing run, in
     * ascending order, each once; an auditor reads the run's trades from exactly these.
     * @param deliveryDay The delivery day.
     * @param runNumber The run.
     * @return The block numbers.
     */
    function runTradeBlocks(uint32 deliveryDay, uint32 runNumber)
        external
        view
        returns (uint64[] memory)
    {
        return _tradeBlocks[deliveryDay][runNumber];
    }

    /**
     * @notice Returns settlement run `runNumber` of a day or month; all zero when it was
     * never published.
     * @param periodId The delivery day as YYYYMMDD, or the month as YYYYMM00.
     * @param runNumber The run (1 for the first).
     * @return The run; its `blockNumber` holds its {SettlementPublished} event.
     */
    function settlementRun(uint32 periodId, uint32 runNumber)
        external
        view
        returns (SettlementRun memory)
    {
        return _settlementRuns[periodId][runNumber];
    }

    /**
     * @notice Returns how many settlement runs of a day or month are published; the latest
     * is the one in force.
     * @param periodId The delivery day as YYYYMMDD, or the month as YYYYMM00.
     * @return The number of runs (runs are numbered 1 to this).
     */
    function settlementRunCount(uint32 periodId) external view returns (uint32) {
        return _settlementRunCounts[periodId];
    }

    /**
     * @notice Returns what is stored for an order recorded with {recordOrder}; all zero when
     * it is unknown (batched orders live in events only).
     * @param orderId The order.
     * @return enterpriseId The enterprise that placed it.
     * @return deliveryDay The delivery day as YYYYMMDD.
     * @return side 0 sell, 1 buy.
     * @return version 1 when recorded, plus one per amendment.
     * @return cancelled Whether it was cancelled.
     * @return contentHash Hash of the order's canonical content at `version`.
     * @return blockNumber The block of the order's latest action (record, amend, cancel).
     */
    function order(bytes32 orderId)
        external
        view
        returns (
            bytes32 enterpriseId,
            uint32 deliveryDay,
            uint8 side,
            uint16 version,
            bool cancelled,
            bytes32 contentHash,
            uint64 blockNumber
        )
    {
        Order storage order_ = _orders[orderId];
        return (
            _enterpriseIds[order_.enterpriseIndex],
            order_.deliveryDay,
            order_.side,
            order_.version,
            order_.cancelled,
            order_.contentHash,
            order_.blockNumber
        );
    }

    /**
     * @notice Returns where a batch was recorded; all zero when it is unknown.
     * @param batchId The batch.
     * @return blockNumber The block holding its events.
     * @return count The number of items.
     */
    function batch(bytes32 batchId) external view returns (uint64 blockNumber, uint32 count) {
        Batch storage batch_ = _batches[batchId];
        return (batch_.blockNumber, batch_.count);
    }

    // ---------------------------------------------------------------------- internals

    // Returns the enterprise's index when `account` is its current account.
    function _requireAccountOf(bytes32 enterpriseId, address account)
        private
        view
        returns (uint64)
    {
        // A storage pointer: reading the two fields costs less gas than a copy to memory.
        Enterprise storage enterprise = _enterprises[enterpriseId];
        if (enterprise.account != account || account == address(0)) {
            revert CapacityMarketNotEnterpriseAccount(enterpriseId, account);
        }
        return enterprise.index;
    }

    // Orders of an open day change only while `block.timestamp < gateClosure`.
    function _requireGateOpen(uint32 deliveryDay) private view {
        uint64 gateClosure = _days[deliveryDay].gateClosure;
        if (gateClosure == 0) {
            revert CapacityMarketDayNotOpen(deliveryDay);
        }
        if (block.timestamp >= gateClosure) {
            revert CapacityMarketGateClosed(deliveryDay, gateClosure, uint64(block.timestamp));
        }
    }

    // The stored order `orderId`, checked for a change by the caller: known, the caller is
    // its enterprise's current account, not cancelled, gate not reached.
    function _changeableOrder(bytes32 orderId)
        private
        view
        returns (Order storage order_, bytes32 enterpriseId)
    {
        order_ = _orders[orderId];
        if (order_.blockNumber == 0) {
            revert CapacityMarketUnknownOrder(orderId);
        }
        enterpriseId = _enterpriseIds[order_.enterpriseIndex];
        _requireAccountOf(enterpriseId, _msgSender());
        if (order_.cancelled) {
            revert CapacityMarketOrderCancelled(orderId);
        }
        _requireGateOpen(order_.deliveryDay);
    }

    // The current, unpublished run `runNumber` of an open day whose gate has closed.
    function _openRun(uint32 deliveryDay, uint32 runNumber)
        private
        view
        returns (ClearingRun storage run_)
    {
        MarketDay storage day_ = _days[deliveryDay];
        uint64 gateClosure = day_.gateClosure;
        if (gateClosure == 0) {
            revert CapacityMarketDayNotOpen(deliveryDay);
        }
        if (block.timestamp < gateClosure) {
            revert CapacityMarketGateOpen(deliveryDay, gateClosure, uint64(block.timestamp));
        }
        run_ = _runs[deliveryDay][runNumber];
        if (run_.published) {
            revert CapacityMarketAlreadyPublished(deliveryDay, runNumber);
        }
        uint32 currentRun = day_.currentRun;
        if (runNumber != currentRun) {
            revert CapacityMarketWrongRun(deliveryDay, currentRun, runNumber);
        }
    }

    // A cheap shape check (year 1970-9999, month 1-12, day 1-31) that catches a day passed in
    // another encoding, such as a Unix timestamp or a day count; it is not a calendar.
    function _isPlausibleDay(uint32 day_) private pure returns (bool) {
        uint32 month = (day_ / 100) % 100;
        uint32 dayOfMonth = day_ % 100;
        return day_ >= 19700101 && day_ <= 99991231 && month >= 1 && month <= 12
            && dayOfMonth >= 1 && dayOfMonth <= 31;
    }
}
