"""The DynamoDB store: the mirror table (rows, what users write) and the state table (what the service
records). I/O only: what the items mean is :mod:`ecr_mirror.rows` and :mod:`ecr_mirror.status` (pure).

Two tables, and why:

- the **mirror table** (partition key ``id``) holds one row item per image, written by its owner only
  (``ecr-mirror add``, or any DynamoDB client's ``put-item``); its stream starts a sync when a user
  adds or changes a row;
- the **state table** (``pk``, ``sk``; TTL ``expires_at``; no stream) holds one item per (row, tag),
  one per row whose row-level state is worth showing, and pass records (layout in
  :mod:`ecr_mirror.status`). The service writes only here, so no status write can start a sync, a
  user's ``put-item`` of a row never erases a status, and the schedule's scan of the mirror table
  reads no status bytes.

Items go in and come out as plain Python (str, list, dict, Decimal, bool, set), the way boto3's
resource layer has them. Every botocore error becomes :class:`~ecr_mirror.errors.AwsError`
(:func:`ecr_mirror.aws.aws_error`); a conditional write whose condition failed is a False return.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .aws import BOTO_ERRORS, aws_error, error_code
from .config import DEFAULT_REPOSITORY_PREFIX
from .budget import BUDGET_PK, Allowance
from .errors import ApplyError, AwsError, ConfigError, MirrorError, RowError, shown
from .rows import (
    ATTR_ID,
    ATTR_ROW_ERROR,
    ATTR_ROW_ERROR_AT,
    ATTR_STATUS,
    USER_ATTRIBUTES,
    Row,
    check_prefix,
    parse_row,
    user_attributes,
)
from .status import (
    KEY_PK,
    KEY_SK,
    PASS_PK,
    ROW_SK,
    TAG_PREFIX,
    TTL_ATTRIBUTE,
    PassRecord,
    RowState,
    RowStatus,
    TagStatus,
    expiry_epoch,
    has_legacy_status,
    legacy_row_status,
    legacy_tag_statuses,
    progress_partition,
    tag_sort_key,
)

if TYPE_CHECKING:
    from .rowsfile import RowChange

_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
#: BatchWriteItem takes at most 25 requests
_BATCH_WRITE = 25


class _Table:
    """What both tables share: the client (or resource), value conversion, and calls that map errors.

    Pass ``boto3.client("dynamodb")``, ``boto3.resource("dynamodb")`` or a resource's ``Table`` (not a
    resource's ``meta.client`` on its own: that converts values itself in a way that cannot be told
    from outside).
    """

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        if not isinstance(table_name, str) or not _TABLE_NAME_RE.fullmatch(table_name):
            raise ConfigError(
                f"table name {shown(table_name)} is not valid: 3-255 of letters, digits, '_', '.', '-'"
            )
        meta = getattr(dynamodb, "meta", None)
        resource_client = getattr(meta, "client", None)  # a resource (or Table) has meta.client
        # a resource's client converts plain Python values to and from DynamoDB's typed JSON
        # itself; a plain client does not, and then this class does it
        self._high_level = resource_client is not None
        self._client = resource_client or dynamodb
        self.name = table_name
        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    def _to_dynamo(self, value: Any) -> Any:
        value = _for_dynamo(value)
        return value if self._high_level else self._serializer.serialize(value)

    def _item_to_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._to_dynamo(v) for k, v in item.items()}

    def _values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._to_dynamo(v) for k, v in values.items()}

    def _item_from_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self._high_level:
            return dict(item)
        return {k: self._deserializer.deserialize(v) for k, v in item.items()}

    def _error(self, exc: BaseException, what: str) -> Any:
        """The :class:`~ecr_mirror.errors.AwsError` for ``exc`` in ``what`` (e.g. ``"GetItem"``), naming this
        table: ``DynamoDB GetItem on table 'mirror' failed: …``."""
        return aws_error(exc, f"DynamoDB {what} on table {self.name!r}")

    def _call(self, method: str, **kwargs: Any) -> Any:
        return getattr(self._client, method)(**kwargs)

    def _conditional(self, method: str, what: str, **kwargs: Any) -> bool:
        """A conditional write: False when its condition failed; :class:`AwsError` for any other failure."""
        try:
            self._call(method, TableName=self.name, **kwargs)
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._error(exc, what) from exc
        return True

    def _pages(self, operation: str, what: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated Query or Scan, as plain Python."""
        try:
            for page in self._client.get_paginator(operation).paginate(TableName=self.name, **kwargs):
                for item in page.get("Items", []):
                    yield self._item_from_dynamo(item)
        except BOTO_ERRORS as exc:
            raise self._error(exc, what) from exc

    def _create(self, *, wait: bool, **spec: Any) -> bool:
        try:
            self._call("create_table", TableName=self.name, BillingMode="PAY_PER_REQUEST", **spec)
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ResourceInUseException":
                return False
            raise self._error(exc, "CreateTable") from exc
        if wait:
            try:
                self._client.get_waiter("table_exists").wait(
                    TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
                )
            except BOTO_ERRORS as exc:
                raise self._error(exc, "waiting for the table") from exc
        return True


class MirrorTable(_Table):
    """The mirror table: one row item per mirrored image, written by its owner (the service only reads it,
    and, once, removes the status an older version wrote into it: :meth:`strip_legacy`)."""

    def __init__(self, dynamodb: Any, table_name: str, *, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> None:
        super().__init__(dynamodb, table_name)
        self.prefix = check_prefix(prefix)

    def _key(self, row_id: str) -> dict[str, Any]:
        return {ATTR_ID: self._to_dynamo(row_id)}

    def create(self, *, wait: bool = True) -> bool:
        """Create the table (on demand, stream NEW_AND_OLD_IMAGES); False if it already exists.

        For local and development use; deployed stacks create the table with CDK.
        """
        return self._create(
            wait=wait,
            AttributeDefinitions=[{"AttributeName": ATTR_ID, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": ATTR_ID, "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )

    def put_row(self, item: Mapping[str, Any], *, overwrite: bool = False) -> Row:
        """Validate and write a row. Raises :class:`RowError` if it exists (unless ``overwrite``).

        Service attributes in ``item`` are not written. Overwriting replaces the row item only: what
        the service recorded for it lives in the state table and stays.
        """
        row = parse_row(item, prefix=self.prefix)
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": self._item_to_dynamo(user_attributes(item))}
        if not overwrite:
            kwargs["ConditionExpression"] = "attribute_not_exists(#id)"
            kwargs["ExpressionAttributeNames"] = {"#id": ATTR_ID}
        try:
            self._call("put_item", **kwargs)
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RowError(
                    f"row {row.id!r}: attribute 'id': a row with this id already exists "
                    "(overwrite it: `ecr-mirror add --replace`, or remove it first)",
                    attribute=ATTR_ID,
                ) from exc
            raise self._error(exc, "PutItem") from exc
        return row

    def apply_changes(self, changes: Sequence[RowChange], *, state: StateTable | None = None) -> None:
        """Make the writes of a rows-file plan (:attr:`ecr_mirror.rowsfile.Plan.writes`), in order: ``add``
        (the row must not exist), ``change`` (overwritten), ``delete`` (with the row's items in ``state``
        when given: where no stream handler will delete them, as for the CLI). Raises :class:`ApplyError`
        at the first failed write, saying how many were made."""
        for done, change in enumerate(changes):
            try:
                if change.action == "delete":
                    self.delete_row(change.row_id)
                    if state is not None:
                        state.delete_row_state(change.row_id)
                else:
                    self.put_row(change.item or {}, overwrite=change.action == "change")
            except MirrorError as exc:
                raise ApplyError(exc, written=done, total=len(changes)) from exc

    def delete_row(self, row_id: str) -> bool:
        """Delete a row; False if there was none. (Its state items go when the stream handler sees the
        REMOVE, or with :meth:`StateTable.delete_row_state`.)"""
        try:
            response = self._call("delete_item", TableName=self.name, Key=self._key(row_id), ReturnValues="ALL_OLD")
        except BOTO_ERRORS as exc:
            raise self._error(exc, "DeleteItem") from exc
        return bool(response.get("Attributes"))

    def get_row(self, row_id: str) -> dict[str, Any] | None:
        """The raw item (plain Python) or None."""
        try:
            response = self._call("get_item", TableName=self.name, Key=self._key(row_id), ConsistentRead=True)
        except BOTO_ERRORS as exc:
            raise self._error(exc, "GetItem") from exc
        item = response.get("Item")
        return self._item_from_dynamo(item) if item else None

    def scan_rows(
        self, *, consistent: bool = False, page_size: int | None = None, user_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every item in the table (paginated), raw. ``user_only``: read only the attributes users write
        (:data:`ecr_mirror.rows.USER_ATTRIBUTES`, a ProjectionExpression), never a legacy status map."""
        kwargs: dict[str, Any] = {"ConsistentRead": consistent}
        if page_size:
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        if user_only:
            names = {f"#a{i}": name for i, name in enumerate(USER_ATTRIBUTES)}
            kwargs["ProjectionExpression"] = ", ".join(names)
            kwargs["ExpressionAttributeNames"] = names
        return self._pages("scan", "Scan", **kwargs)

    def scan_parsed(self, *, consistent: bool = False) -> Iterator[tuple[dict[str, Any], Row | None, RowError | None]]:
        """``(item, row, None)`` for each valid row, ``(item, None, error)`` for each invalid one."""
        for item in self.scan_rows(consistent=consistent):
            try:
                yield item, parse_row(item, prefix=self.prefix), None
            except RowError as exc:
                yield item, None, exc

    def strip_legacy(self, row_id: str) -> bool:
        """``REMOVE status, row_error, row_error_at`` from a row item that still has one of them (the last
        step of the migration); False if it had none (or the row is gone)."""
        names = {"#s": ATTR_STATUS, "#e": ATTR_ROW_ERROR, "#at": ATTR_ROW_ERROR_AT}
        return self._conditional("update_item", "UpdateItem (legacy status)", Key=self._key(row_id), UpdateExpression="REMOVE #s, #e, #at",
            ConditionExpression="attribute_exists(#s) OR attribute_exists(#e) OR attribute_exists(#at)",
            ExpressionAttributeNames=names,
        )


class StateTable(_Table):
    """The state table: tag statuses, row statuses and pass records (layout: :mod:`ecr_mirror.status`).

    ``rows``: the mirror table, needed only by :meth:`migrate` (which empties a row item's legacy status).
    """

    def __init__(self, dynamodb: Any, table_name: str, *, rows: MirrorTable | None = None) -> None:
        super().__init__(dynamodb, table_name)
        self.rows = rows

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {KEY_PK: self._to_dynamo(pk), KEY_SK: self._to_dynamo(sk)}

    def create(self, *, wait: bool = True) -> bool:
        """Create the table (on demand, no stream, TTL on ``expires_at``); False if it already exists.

        For local and development use; deployed stacks create the table with CDK.
        """
        created = self._create(
            wait=wait,
            AttributeDefinitions=[
                {"AttributeName": KEY_PK, "AttributeType": "S"},
                {"AttributeName": KEY_SK, "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": KEY_PK, "KeyType": "HASH"}, {"AttributeName": KEY_SK, "KeyType": "RANGE"}],
        )
        if created:
            try:
                self._call(
                    "update_time_to_live", TableName=self.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
            except BOTO_ERRORS as exc:
                raise self._error(exc, "UpdateTimeToLive") from exc
        return created

    # -- a row's state

    def _partition(self, pk: str, what: str, *, names: Mapping[str, str] | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of partition ``pk`` (a Query, all pages); ``names``: more ExpressionAttributeNames."""
        return self._pages(
            "query", what, KeyConditionExpression="#pk = :pk", ExpressionAttributeNames={"#pk": KEY_PK, **(names or {})},
            ExpressionAttributeValues=self._values({":pk": pk}), **kwargs,
        )

    def read_state(self, row_id: str) -> RowState:
        """Every tag status and the row status of ``row_id`` (one consistent Query, all pages)."""
        tags: dict[str, TagStatus] = {}
        row: RowStatus | None = None
        for item in self._partition(row_id, "Query (row state)", ConsistentRead=True):
            sk = item.get(KEY_SK)
            if isinstance(sk, str) and sk.startswith(TAG_PREFIX):
                tags[sk[len(TAG_PREFIX):]] = TagStatus.from_item(item)
            elif sk == ROW_SK:
                row = RowStatus.from_item(item)
        return RowState(tags, row)

    def put_tag(self, row_id: str, tag: str, status: TagStatus, *, previous: TagStatus | None) -> bool:
        """Write ``tag``'s status, only if its item is still as ``previous`` (None: no item yet), compared by
        ``last_attempt``, the item's version. False if another sync wrote it meanwhile (this write is
        then stale and dropped). A lease is taken or released by the status written."""
        kwargs: dict[str, Any] = {}
        if previous is None:
            condition, names = "attribute_not_exists(#pk)", {"#pk": KEY_PK}
        elif previous.last_attempt is None:
            condition, names = "attribute_exists(#pk) AND attribute_not_exists(#la)", {"#pk": KEY_PK, "#la": "last_attempt"}
        else:
            condition, names = "#la = :prev", {"#la": "last_attempt"}
            kwargs["ExpressionAttributeValues"] = self._values({":prev": previous.last_attempt})
        return self._conditional("put_item", "PutItem (tag status)",
            Item=self._item_to_dynamo({KEY_PK: row_id, KEY_SK: tag_sort_key(tag), **status.to_item()}),
            ConditionExpression=condition, ExpressionAttributeNames=names, **kwargs,
        )

    def delete_tags(self, row_id: str, tags: Iterable[str]) -> None:
        """Forget the statuses of ``tags`` (no longer selected)."""
        self._delete_keys([(row_id, tag_sort_key(t)) for t in tags])

    def put_row_status(self, row_id: str, status: RowStatus | None) -> None:
        """Record the row status (``None``: remove it)."""
        try:
            if status is None:
                self._call("delete_item", TableName=self.name, Key=self._key(row_id, ROW_SK))
            else:
                self._call("put_item", TableName=self.name,
                           Item=self._item_to_dynamo({KEY_PK: row_id, KEY_SK: ROW_SK, **status.to_item()}))
        except BOTO_ERRORS as exc:
            raise self._error(exc, "row status") from exc

    def delete_row_state(self, row_id: str) -> int:
        """Delete every state item of a removed row; returns how many there were."""
        keys = [(row_id, str(item[KEY_SK])) for item in self._partition(
            row_id, "Query (row keys)", names={"#sk": KEY_SK}, ProjectionExpression="#pk, #sk")]
        self._delete_keys(keys)
        return len(keys)

    def _delete_keys(self, keys: list[tuple[str, str]]) -> None:
        for start in range(0, len(keys), _BATCH_WRITE):
            requests = [{"DeleteRequest": {"Key": self._key(pk, sk)}} for pk, sk in keys[start : start + _BATCH_WRITE]]
            for attempt in range(5):
                try:
                    answer = self._call("batch_write_item", RequestItems={self.name: requests})
                except BOTO_ERRORS as exc:
                    raise self._error(exc, "BatchWriteItem") from exc
                requests = (answer.get("UnprocessedItems") or {}).get(self.name) or []
                if not requests:
                    break
                time.sleep(0.05 * 2**attempt)  # DynamoDB's advice for unprocessed items: back off
            if requests:
                raise AwsError(f"DynamoDB BatchWriteItem left {len(requests)} deletes unprocessed", temporary=True)

    # -- the migration of a legacy row item

    def migrate(self, item: Mapping[str, Any]) -> bool:
        """Move the status an older version wrote into row item ``item`` (``status`` map, ``row_error``)
        into this table, then remove it from the row item. Idempotent, and safe to interrupt anywhere:
        each state item is written only if it does not exist yet or is older (``last_attempt``), and the
        row item is emptied last. Returns whether the row item had legacy status."""
        row_id = item.get(ATTR_ID)
        if not isinstance(row_id, str) or not has_legacy_status(item):
            return False
        if self.rows is None:
            raise ConfigError("the migration of a legacy row needs the mirror table (StateTable(rows=...))")
        for tag, status in legacy_tag_statuses(item).items():
            self._put_if_newer(row_id, tag_sort_key(tag), status.to_item(), status.last_attempt)
        row_status = legacy_row_status(item)
        if row_status is not None:
            self._put_if_newer(row_id, ROW_SK, row_status.to_item(), row_status.at, stamp="at")
        self.rows.strip_legacy(row_id)
        return True

    def _put_if_newer(self, pk: str, sk: str, attributes: dict[str, Any], stamp_value: str | None, *,
                      stamp: str = "last_attempt") -> bool:
        condition = "attribute_not_exists(#pk)"
        values = {}
        if stamp_value:
            condition += " OR attribute_not_exists(#st) OR #st < :st"
            values[":st"] = stamp_value
        kwargs: dict[str, Any] = {"ExpressionAttributeValues": self._values(values)} if values else {}
        names = {"#pk": KEY_PK, **({"#st": stamp} if stamp_value else {})}
        return self._conditional("put_item", "PutItem (migration)", Item=self._item_to_dynamo({KEY_PK: pk, KEY_SK: sk, **attributes}),
            ConditionExpression=condition, ExpressionAttributeNames=names, **kwargs,
        )

    # -- every row's state (ecr-mirror status)

    def scan_states(self) -> dict[str, RowState]:
        """``{row id: RowState}`` of every row with state items (one Scan; pass records skipped)."""
        tags: dict[str, dict[str, TagStatus]] = {}
        rows: dict[str, RowStatus] = {}
        for item in self._pages("scan", "Scan (state)", ConsistentRead=True):
            pk, sk = item.get(KEY_PK), item.get(KEY_SK)
            if not isinstance(pk, str) or pk.startswith("#") or not isinstance(sk, str):
                continue
            if sk.startswith(TAG_PREFIX):
                tags.setdefault(pk, {})[sk[len(TAG_PREFIX):]] = TagStatus.from_item(item)
            elif sk == ROW_SK:
                rows[pk] = RowStatus.from_item(item)
        return {pk: RowState(tags.get(pk, {}), rows.get(pk)) for pk in sorted(set(tags) | set(rows))}

    # -- pull budgets (issue 15; the rules are ecr_mirror.budget's)

    def budget_get(self, host: str) -> Allowance | None:
        """The budget item of upstream ``host`` (a consistent GetItem), or None."""
        try:
            answer = self._call("get_item", TableName=self.name, Key=self._key(BUDGET_PK, host), ConsistentRead=True)
        except BOTO_ERRORS as exc:
            raise aws_error(exc, "DynamoDB GetItem (budget)") from exc
        item = answer.get("Item")
        return Allowance.from_item(host, self._item_from_dynamo(item)) if item else None

    def budgets(self) -> list[Allowance]:
        """Every budget item (a Query of the budget partition)."""
        return [Allowance.from_item(str(item.get(KEY_SK)), item) for item in self._partition(BUDGET_PK, "Query (budgets)")]

    def _update(self, host: str, what: str, expression: str, values: Mapping[str, Any], *, condition: str | None = None,
                names: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """One UpdateItem of ``host``'s budget item; its new attributes, or None when ``condition`` failed."""
        used = f"{expression} {condition or ''}"
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": {k: v for k, v in {"#pk": KEY_PK, **(names or {})}.items() if k in used}}
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            answer = self._call("update_item", TableName=self.name, Key=self._key(BUDGET_PK, host),
                                UpdateExpression=expression, ExpressionAttributeValues=self._values(values),
                                ReturnValues="ALL_NEW", **kwargs)
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise aws_error(exc, f"DynamoDB UpdateItem ({what})") from exc
        return self._item_from_dynamo(answer.get("Attributes") or {})

    def budget_take(self, host: str, pulls: int, reserve: int, now: float) -> int | None:
        """``remaining -= pulls, outstanding += pulls`` if ``remaining >= pulls + reserve``; the remaining
        after, or None (the pulls are not there)."""
        new = self._update(host, "budget take", "SET #r = #r - :n, #o = if_not_exists(#o, :zero) + :n, #lt = :now",
                           {":n": pulls, ":need": pulls + reserve, ":zero": 0, ":now": now},
                           condition="#r >= :need", names={"#r": "remaining", "#o": "outstanding", "#lt": "last_take_at"})
        return None if new is None else int(new.get("remaining", 0))

    def budget_settle(self, host: str, reserved: int, spent: int, now: float) -> None:
        """A reservation is over: ``outstanding -= reserved, remaining += reserved - spent`` (nothing when the
        item is gone)."""
        self._update(host, "budget settle", "SET #r = #r + :back, #o = if_not_exists(#o, :zero) - :res, #ls = :now",
                     {":back": max(0, reserved - spent), ":res": reserved, ":zero": 0, ":now": now},
                     condition="attribute_exists(#pk)", names={"#r": "remaining", "#o": "outstanding", "#ls": "last_settle_at"})

    def budget_announce(self, allowance: Allowance, *, started: float, quiet_before: float) -> int | None:
        """An upstream's announcement: ``remaining = announced, outstanding = 0`` when no take happened since
        ``quiet_before`` (nothing in flight; also creates the item); else ``remaining = announced - outstanding``
        when no reservation was settled since ``started`` (the request left); else nothing. The remaining
        after, or None."""
        attrs = {k: v for k, v in allowance.to_item().items()
                 if k in ("limit", "window_seconds", "announced_at", "refill_at", "source")}
        names = {f"#{k}": k for k in attrs}
        sets = ", ".join(f"#{k} = :{k}" for k in attrs)
        values = {f":{k}": v for k, v in attrs.items()}
        common = {"#r": "remaining", "#o": "outstanding", "#lt": "last_take_at", "#ls": "last_settle_at", **names}
        new = self._update(
            allowance.host, "budget announce", f"SET {sets}, #r = :a, #o = :zero, #lt = if_not_exists(#lt, :zero), "
            "#ls = if_not_exists(#ls, :zero)",
            {**values, ":a": allowance.remaining, ":zero": 0, ":quiet": quiet_before},
            condition="attribute_not_exists(#pk) OR #lt < :quiet", names=common)
        if new is None:
            new = self._update(
                allowance.host, "budget announce", f"SET {sets}, #r = :a - #o",
                {**values, ":a": allowance.remaining, ":started": started},
                condition="#ls < :started", names={"#r": "remaining", "#o": "outstanding", "#ls": "last_settle_at", **names})
        return None if new is None else int(new.get("remaining", 0))

    # -- passes

    def put_pass(self, record: PassRecord) -> None:
        """Record a pass (a scheduled pass, or a CLI sync with its rows); expires after 30 days."""
        item = {KEY_PK: PASS_PK, KEY_SK: record.pass_id, TTL_ATTRIBUTE: expiry_epoch(), **record.to_item()}
        try:
            self._call("put_item", TableName=self.name, Item=self._item_to_dynamo(item))
        except BOTO_ERRORS as exc:
            raise self._error(exc, "PutItem (pass)") from exc

    def put_progress(self, pass_id: str, invocation_id: str, rows: Iterable[str], finished_at: str) -> None:
        """Record the rows one worker invocation of pass ``pass_id`` finished OK; expires after 30 days."""
        item = {KEY_PK: progress_partition(pass_id), KEY_SK: invocation_id, "rows": sorted(set(rows)),
                "finished_at": finished_at, TTL_ATTRIBUTE: expiry_epoch()}
        try:
            self._call("put_item", TableName=self.name, Item=self._item_to_dynamo(item))
        except BOTO_ERRORS as exc:
            raise self._error(exc, "PutItem (pass progress)") from exc

    def passes(self) -> Iterator[PassRecord]:
        """Pass records, newest first (a Query of the ``#pass`` partition, read backwards, page by page)."""
        for item in self._partition(PASS_PK, "Query (passes)", ScanIndexForward=False):
            sk = item.get(KEY_SK)
            if isinstance(sk, str):
                yield PassRecord.from_item(sk, item)

    def latest_audit(self) -> PassRecord | None:
        """The newest scheduled pass that audited, or None."""
        return next((p for p in self.passes() if p.audit and p.kind == "schedule"), None)

    def verified_at(self, row_ids: Iterable[str], *, max_passes: int = 50) -> dict[str, str]:
        """``{row id: finished_at}`` of the newest pass (of the last ``max_passes``) that finished each row OK."""
        wanted = set(row_ids)
        found: dict[str, str] = {}
        for n, record in enumerate(self.passes()):
            if n >= max_passes or not wanted - set(found):
                break
            if record.rows and record.finished_at:
                for row_id in wanted.intersection(record.rows) - set(found):
                    found[row_id] = record.finished_at
            for item in self._partition(progress_partition(record.pass_id), "Query (pass progress)"):
                finished, rows = item.get("finished_at"), item.get("rows") or []
                if not isinstance(finished, str):
                    continue
                for row_id in wanted.intersection(r for r in rows if isinstance(r, str)):
                    if found.get(row_id, "") < finished:
                        found[row_id] = finished
        return found


def _for_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB numbers); tuples lists; the rest as is."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _for_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_for_dynamo(v) for v in value]
    return value


__all__ = ["MirrorTable", "StateTable"]
