"""The DynamoDB store of the mirror table: rows in, rows and status out. The only table module that
imports boto3/botocore (rows, tags and status records are pure: :mod:`ecr_mirror.rows`,
:mod:`ecr_mirror.tags`, :mod:`ecr_mirror.status`).

Items go in and come out as plain Python (str, list, dict, Decimal, bool, set), the way boto3's
resource layer has them. Every botocore error becomes :class:`~ecr_mirror.errors.AwsError`
(:func:`ecr_mirror.aws.aws_error`). The status API (``write_status``, ``prune_status``,
``write_invalid``, ``clear_invalid``, ``read_status``) sits together at the end of
:class:`MirrorTable`: it is what :class:`ecr_mirror.sync.StatusStore` asks of a store, and the part
a different status layout replaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .aws import BOTO_ERRORS, aws_error, error_code
from .config import DEFAULT_REPOSITORY_PREFIX
from .errors import AwsError, ConfigError, RowError, shown
from .rows import ATTR_ID, ATTR_ROW_ERROR, ATTR_ROW_ERROR_AT, ATTR_STATUS, Row, check_prefix, parse_row, user_attributes
from .status import MAX_ERROR_LENGTH, normalise_entry, now_timestamp, status_records

_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


class MirrorTable:
    """The mirror table over a boto3 DynamoDB client or resource built by the caller.

    Pass ``boto3.client("dynamodb")``, ``boto3.resource("dynamodb")`` or a resource's
    ``Table`` (not a resource's ``meta.client`` on its own: that converts values itself in
    a way that cannot be told from outside). Items go in and come out as plain Python (str,
    list, dict, Decimal, bool, set), the way boto3's resource layer has them. Every botocore
    error becomes :class:`AwsError`; a dropped status write is a False return, not an error.
    """

    def __init__(self, dynamodb: Any, table_name: str, *, prefix: str = DEFAULT_REPOSITORY_PREFIX) -> None:
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
        self.prefix = check_prefix(prefix)
        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    # -- conversions
    def _to_dynamo(self, value: Any) -> Any:
        value = _for_dynamo(value)
        return value if self._high_level else self._serializer.serialize(value)

    def _key(self, row_id: str) -> dict[str, Any]:
        return {ATTR_ID: self._to_dynamo(row_id)}

    def _item_to_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._to_dynamo(v) for k, v in item.items()}

    def _item_from_dynamo(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self._high_level:
            return dict(item)
        return {k: self._deserializer.deserialize(v) for k, v in item.items()}

    def _call(self, method: str, **kwargs: Any) -> Any:
        return getattr(self._client, method)(**kwargs)

    # -- the table
    def create(self, *, wait: bool = True) -> bool:
        """Create the table (on demand, stream NEW_AND_OLD_IMAGES); False if it already exists.

        For local and development use; deployed stacks create the table with CDK.
        """
        try:
            self._call(
                "create_table",
                TableName=self.name,
                AttributeDefinitions=[{"AttributeName": ATTR_ID, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": ATTR_ID, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ResourceInUseException":
                return False
            raise aws_error(exc, "DynamoDB CreateTable") from exc
        if wait:
            try:
                self._client.get_waiter("table_exists").wait(
                    TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
                )
            except BOTO_ERRORS as exc:
                raise aws_error(exc, "DynamoDB waiting for the table") from exc
        return True

    # -- rows
    def put_row(self, item: Mapping[str, Any], *, overwrite: bool = False) -> Row:
        """Validate and write a row. Raises :class:`RowError` if it exists (unless ``overwrite``).

        Service attributes in ``item`` are not written. Overwriting replaces the whole item,
        so the row's recorded status goes too; the next sync records it afresh.
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
                    "(overwrite it, or remove it first)",
                    attribute=ATTR_ID,
                ) from exc
            raise aws_error(exc, "DynamoDB PutItem") from exc
        return row

    def delete_row(self, row_id: str) -> bool:
        """Delete a row (and its status); False if there was none."""
        try:
            response = self._call(
                "delete_item",
                TableName=self.name,
                Key=self._key(row_id),
                ReturnValues="ALL_OLD",
            )
        except BOTO_ERRORS as exc:
            raise aws_error(exc, "DynamoDB DeleteItem") from exc
        return bool(response.get("Attributes"))

    def get_row(self, row_id: str) -> dict[str, Any] | None:
        """The raw item (plain Python, status included) or None."""
        try:
            response = self._call(
                "get_item", TableName=self.name, Key=self._key(row_id), ConsistentRead=True
            )
        except BOTO_ERRORS as exc:
            raise aws_error(exc, "DynamoDB GetItem") from exc
        item = response.get("Item")
        return self._item_from_dynamo(item) if item else None

    def scan_rows(self, *, consistent: bool = False, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item in the table (paginated), raw, status included."""
        pagination = {"PageSize": page_size} if page_size else {}
        try:
            paginator = self._client.get_paginator("scan")
            for page in paginator.paginate(TableName=self.name, ConsistentRead=consistent, PaginationConfig=pagination):
                for item in page.get("Items", []):
                    yield self._item_from_dynamo(item)
        except BOTO_ERRORS as exc:
            raise aws_error(exc, "DynamoDB Scan") from exc

    def scan_parsed(self, *, consistent: bool = False) -> Iterator[tuple[dict[str, Any], Row | None, RowError | None]]:
        """``(item, row, None)`` for each valid row, ``(item, None, error)`` for each invalid one."""
        for item in self.scan_rows(consistent=consistent):
            try:
                yield item, parse_row(item, prefix=self.prefix), None
            except RowError as exc:
                yield item, None, exc

    # -- status (the API a sync needs: ecr_mirror.sync.StatusStore)
    def write_status(self, row_id: str, tag: str, entry: Mapping[str, Any]) -> bool:
        """Record the status of one tag. Returns False if the write was dropped.

        A write is dropped (not an error) when the stored entry for ``tag`` has a
        ``last_attempt`` at least as new as ``entry``'s (another worker got there first), or
        when the row no longer exists. Only ``status.<tag>`` fields are touched: fields that
        are None are removed, except ``last_success``, which a failed attempt keeps.
        """
        values = normalise_entry(entry)
        names = {"#s": ATTR_STATUS, "#t": tag, "#id": ATTR_ID, "#la": "last_attempt"}
        expr_values: dict[str, Any] = {":la": self._to_dynamo(values["last_attempt"])}
        sets: list[str] = []
        removes: list[str] = []
        for i, (key, value) in enumerate(sorted(values.items())):
            if value is None:
                if key != "last_success":
                    names[f"#f{i}"] = key
                    removes.append(f"#s.#t.#f{i}")
                continue
            names[f"#f{i}"] = key
            expr_values[f":v{i}"] = self._to_dynamo(value)
            sets.append(f"#s.#t.#f{i} = :v{i}")
        update = "SET " + ", ".join(sets)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        condition = "attribute_exists(#id) AND (attribute_not_exists(#s.#t.#la) OR #s.#t.#la < :la)"
        for attempt in (1, 2):  # not a retry: the second round runs after creating the map the first lacked
            try:
                return self._update(row_id, "status", UpdateExpression=update, ConditionExpression=condition,
                                    ExpressionAttributeNames=names, ExpressionAttributeValues=expr_values)
            except AwsError as exc:
                if exc.code != "ValidationException" or attempt == 2:
                    raise
                # the status map or this tag's entry does not exist yet: create them, then write again
                if not self._ensure_status_entry(row_id, tag):
                    return False
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_status_entry(self, row_id: str, tag: str) -> bool:
        """``SET status = if_not_exists(status, {})``, then the same for ``status.<tag>``; False if the row is gone."""
        steps = (
            ("SET #s = if_not_exists(#s, :empty)", {"#s": ATTR_STATUS, "#id": ATTR_ID}),
            ("SET #s.#t = if_not_exists(#s.#t, :empty)", {"#s": ATTR_STATUS, "#t": tag, "#id": ATTR_ID}),
        )
        return all(
            self._update(row_id, "status", UpdateExpression=update, ConditionExpression="attribute_exists(#id)",
                         ExpressionAttributeNames=names, ExpressionAttributeValues={":empty": self._to_dynamo({})})
            for update, names in steps
        )

    def prune_status(self, row_id: str, keep_tags: Iterable[str]) -> list[str]:
        """Remove status entries of tags not in ``keep_tags`` (no longer selected); returns the removed tags."""
        item = self.get_row(row_id)
        status = item.get(ATTR_STATUS) if item else None
        if not isinstance(status, Mapping):
            return []
        keep = set(keep_tags)
        stale = sorted(t for t in status if t not in keep)
        for start in range(0, len(stale), 50):
            chunk = stale[start : start + 50]
            names = {"#s": ATTR_STATUS, "#id": ATTR_ID}
            names.update({f"#t{i}": t for i, t in enumerate(chunk)})
            removed = self._update(
                row_id, "status", UpdateExpression="REMOVE " + ", ".join(f"#s.#t{i}" for i in range(len(chunk))),
                ConditionExpression="attribute_exists(#id)", ExpressionAttributeNames=names,
            )
            if not removed:
                return []
        return stale

    def write_invalid(self, row_id: str, message: str) -> bool:
        """Mark a row invalid (``row_error``) with ``message``; False if the row is gone."""
        return self._update(
            row_id, "row_error", UpdateExpression="SET #e = :e, #at = :at", ConditionExpression="attribute_exists(#id)",
            ExpressionAttributeNames={"#e": ATTR_ROW_ERROR, "#at": ATTR_ROW_ERROR_AT, "#id": ATTR_ID},
            ExpressionAttributeValues={
                ":e": self._to_dynamo(" ".join(str(message).split())[:MAX_ERROR_LENGTH] or "invalid"),
                ":at": self._to_dynamo(now_timestamp()),
            },
        )

    def clear_invalid(self, row_id: str) -> bool:
        """Remove ``row_error`` from a row that validates again; False if there was none (or no row)."""
        return self._update(
            row_id, "row_error", UpdateExpression="REMOVE #e, #at", ConditionExpression="attribute_exists(#e)",
            ExpressionAttributeNames={"#e": ATTR_ROW_ERROR, "#at": ATTR_ROW_ERROR_AT},
        )

    def _update(self, row_id: str, what: str, **expression: Any) -> bool:
        """A conditional UpdateItem of row ``row_id``; False when its condition failed (the row is gone, or
        a newer record is there). Raises :class:`~ecr_mirror.errors.AwsError` for any other failure."""
        try:
            self._call("update_item", TableName=self.name, Key=self._key(row_id), **expression)
        except BOTO_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error(exc, f"DynamoDB UpdateItem ({what})") from exc
        return True

    def read_status(self, row_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Flat status records of every row (or of ``row_ids``), sorted by id then tag.

        Each record has the keys :data:`STATUS_RECORD_FIELDS`; see :func:`status_records`.
        """
        if row_ids is None:
            items: Iterable[dict[str, Any]] = self.scan_rows(consistent=True)
        else:
            items = [i for i in (self.get_row(r) for r in row_ids) if i is not None]
        records = [r for item in items for r in status_records(item)]
        records.sort(key=lambda r: (str(r["id"]), r["tag"] is not None, r["tag"] or ""))
        return records


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
