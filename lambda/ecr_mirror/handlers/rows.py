"""The stack's rows file, applied at ``cdk deploy``: the ``onEvent`` handler of a custom resource.

The stack (context ``rowsFile``, infra/rows.py) validates the YAML file at synth and passes its rows as
a JSON rows document (:func:`ecr_mirror.rowsfile.rows_json`) in a property, so a changed file is an
Update of the resource (a change of comments or layout is none). The CDK Provider framework invokes this handler with the
CloudFormation request and sends the answer to CloudFormation; an exception fails the deployment
with its message (and CloudFormation rolls the stack back, which applies the file as it was).

Properties: ``RowsFile`` (the JSON rows document), ``FileName`` (the path given at synth, for messages). The
repository prefix and the table are the function's ``ECR_MIRROR_*`` settings, as for the worker.

What each request does to the mirror table (the same code as ``ecr-mirror apply -f``:
:func:`ecr_mirror.rowsfile.plan_changes`, :meth:`ecr_mirror.store.MirrorTable.apply_changes`):

- **Create**: rows are added and changed to match the file. Rows not in the file (added with
  ``ecr-mirror add`` or ``put-item``) are left as they are; one that writes the same target repository
  and tag as an entry fails the deployment, as ``apply`` refuses it.
- **Update**: the same, and rows the previous file had that the new one does not are deleted (the
  stack manages the rows of its file, not the others).
- **Delete** (the stack is deleted, or ``rowsFile`` removed from its context): nothing is deleted. The
  rows stay in the table (which the stack retains); ``ecr-mirror remove`` or ``apply --prune`` removes
  them.

Returns ``{"PhysicalResourceId", "Data": {"Added", "Changed", "Deleted", "Unchanged"}}``; the diff is
logged line by line, as ``apply`` prints it.
"""

from __future__ import annotations

from typing import Any

from ..errors import RowsFileError
from ..rows import ATTR_ID
from ..rowsfile import PROPERTY_FILE_NAME, PROPERTY_ROWS, RowChange, load_rows_json, plan_changes
from ..runtime import boto3_client
from ..store import MirrorTable
from ._common import logger, settings


def _file_ids(properties: dict[str, Any] | None, prefix: str) -> set[str]:
    """Row ids of the file in ``properties`` (the previous file of an Update); none if it does not load."""
    text = (properties or {}).get(PROPERTY_ROWS)
    if not isinstance(text, str):
        return set()
    try:
        return {e.row.id for e in load_rows_json(text, prefix=prefix).entries}
    except RowsFileError:
        return set()


def apply_rows_file(event: dict[str, Any], table: MirrorTable) -> dict[str, int]:
    """Make ``table`` match the rows file of a Create or Update ``event`` (see the module docstring).
    Raises :class:`~ecr_mirror.errors.RowsFileError` (an invalid file, a clash with a row not in it: nothing
    is written) or :class:`~ecr_mirror.errors.ApplyError`."""
    properties = event.get("ResourceProperties") or {}
    name = str(properties.get(PROPERTY_FILE_NAME) or "rows file")
    text = properties.get(PROPERTY_ROWS)
    if not isinstance(text, str):
        raise RowsFileError([f"{name}: the custom resource has no {PROPERTY_ROWS} property"])
    rows_file = load_rows_json(text, name=name, prefix=table.prefix)
    wanted = {e.row.id for e in rows_file.entries}
    dropped = _file_ids(event.get("OldResourceProperties"), table.prefix) - wanted
    current, gone = [], []
    for item in table.scan_rows(consistent=True):
        (gone if item.get(ATTR_ID) in dropped else current).append(item)
    plan = plan_changes(rows_file, current, prune=False, prefix=table.prefix)
    if plan.problems:
        raise RowsFileError(plan.problems)
    deletes = [RowChange("delete", str(item[ATTR_ID]), before=item) for item in gone]
    for line in [*plan.lines(), *(f"- {c.row_id}" for c in deletes)]:
        logger.info(line)
    for warning in plan.warnings:
        logger.warning(warning)
    table.apply_changes([*plan.writes, *deletes])
    return {"Added": plan.count("add"), "Changed": plan.count("change"), "Deleted": len(deletes),
            "Unchanged": len(plan.unchanged)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Provider framework's ``onEvent``: apply the rows file on Create and Update, nothing on Delete."""
    config = settings()
    physical = event.get("PhysicalResourceId") or f"{config.table}/rows"
    request = event.get("RequestType")
    if request == "Delete":
        logger.info("rows file resource deleted: the rows stay in the table", extra={"table": config.table})
        return {"PhysicalResourceId": physical, "Data": {"Added": 0, "Changed": 0, "Deleted": 0, "Unchanged": 0}}
    table = MirrorTable(boto3_client("dynamodb"), config.table, prefix=config.repository_prefix)
    counts = apply_rows_file(event, table)
    logger.info("rows file applied", extra={"table": config.table, "request": request, **counts})
    return {"PhysicalResourceId": physical, "Data": counts}
