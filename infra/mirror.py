"""``EcrMirror``: the whole service as one construct, usable inside any CDK app."""

from __future__ import annotations

from typing import Any

from constructs import Construct

from .config import EcrMirrorProps
from .monitoring import MirrorMonitoring
from .rows import MirrorRows
from .service import MirrorService
from .table import MirrorTable, StateTable


class EcrMirror(Construct):
    """Tables, service and monitoring of one mirror.

    ``EcrMirror(scope, "Mirror", repository_prefix="mirror", alarm_email="ops@example.com")``:
    the keyword arguments are the fields of :class:`~infra.config.EcrMirrorProps` (the
    ``cdk.json`` options, in snake case); ``props=`` takes a ready :class:`EcrMirrorProps`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: EcrMirrorProps | None = None, **options: Any):
        super().__init__(scope, construct_id)
        if props is not None and options:
            raise TypeError("give either props= or keyword options, not both")
        self.props = props if props is not None else EcrMirrorProps(**options)
        self.table = MirrorTable(self, "MirrorTable")
        self.state_table = StateTable(self, "StateTable")
        self.service = MirrorService(self, "Service", props=self.props, table=self.table, state_table=self.state_table)
        self.monitoring = MirrorMonitoring(self, "Monitoring", props=self.props, service=self.service)
        self.rows: MirrorRows | None = None
        if self.props.rows_file is not None:  # the rows file, applied at deploy
            self.rows = MirrorRows(self, "Rows", props=self.props, table=self.table, code=self.service.code)

    @property
    def dashboard_url(self) -> str:
        return self.monitoring.dashboard_url
