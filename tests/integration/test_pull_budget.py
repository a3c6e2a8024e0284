"""The pull budget (issue 15): an upstream that announces Docker Hub's pull limit is spent with care, never run into.

Upstream: a real registry behind the counting proxy with a :class:`~tests.support.ratelimit.PullLimiter` (Docker
Hub's headers, every manifest GET a pull, 429 once the window is spent, a window that ends only when the test
says so). The service: the handlers as Lambda runs them (tests/integration/passes.py), moto for DynamoDB and
SQS, the ECR stand-in. Pulls are COUNTED by the limiter; no time is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ecr_mirror import drift, metrics
from ecr_mirror.budget import BUDGET_PK
from ecr_mirror.status import PassRecord, new_pass_id, now_timestamp
from tests.integration.passes import Deployment
from tests.support import images as im
from tests.support.ratelimit import PullLimiter

ECR_MIRROR = str(Path(sys.executable).with_name("ecr-mirror"))
LIMIT, WINDOW = 10, 21600
RESERVE = 1  # the default 10 % of the limit
ROWS, TAGS = 3, 3  # 9 two-platform tags: 27 pulls, 3 windows of LIMIT - RESERVE


@pytest.fixture
def dynamodb_endpoint(atomic_dynamodb):
    """DynamoDB (moto) with DynamoDB's atomic conditional writes (two syncs share one budget item)."""
    return atomic_dynamodb


def hub(d: Deployment, proxy_factory: Any, **kwargs: Any) -> PullLimiter:
    """Put a :class:`PullLimiter` in front of the deployment's upstream (``d.proxy``)."""
    limiter = PullLimiter(limit=LIMIT, window=WINDOW, **kwargs)
    d.proxy = proxy_factory(d.upstream, extensions=[limiter])
    return limiter


def seed(d: Deployment, rows: int = ROWS, tags: int = TAGS, generation: int = 0) -> dict[tuple[str, str], im.Index]:
    pushed = {}
    for r in range(rows):
        for t in range(tags):
            s = 10_000 * generation + 100 * r + t
            index = im.build_index([im.build_image("linux/amd64", seed=s, layers=1, layer_size=256),
                                    im.build_image("linux/arm64/v8", seed=s, layers=1, layer_size=256)])
            im.push_index(d.upstream, f"library/app{r}", index, f"v{t}")
            pushed[(f"app{r}", f"v{t}")] = index
        d.put_row({"id": f"app{r}", "source": f"{d.proxy.host}/library/app{r}", "tags": [f"v{t}" for t in range(tags)],
                   "target_repository": f"mirror/app{r}", "referrers": False})
    d.state.put_pass(PassRecord(new_pass_id(), now_timestamp(), audit=True))  # these passes are not audits
    return pushed


def states(d: Deployment) -> dict[tuple[str, str], str]:
    return {(f"app{r}", tag): s.state for r in range(ROWS) for tag, s in d.state.read_state(f"app{r}").tags.items()}


def test_a_table_needing_three_windows_syncs_over_three_windows_without_a_429(deployment, proxy_factory, monkeypatch):
    d = deployment
    limiter = hub(d, proxy_factory)
    pushed = seed(d)
    d.fresh_containers()
    per_window, rounds = [], 0
    result = d.run_pass()
    while True:
        rounds += 1
        per_window.append(limiter.current.pulls)
        assert limiter.rejected == 0, "a request reached the 429"
        assert limiter.current.pulls <= LIMIT - RESERVE
        assert not result.failures, result.output[-3000:]
        now = states(d)
        assert set(now.values()) <= {drift.IN_SYNC, drift.DEFERRED}
        waiting = d.waiting()
        if drift.DEFERRED not in now.values():
            assert not waiting
            break
        # every row with a deferred tag went back to the queue with a delay (none lost, none failed)
        deferred_rows = {row for (row, _), s in now.items() if s == drift.DEFERRED}
        assert {b["id"] for b, _ in waiting} == deferred_rows
        assert all(0 < delay <= 900 for _, delay in waiting)
        assert d.receive_all() == []  # delayed: nothing to deliver before the window refills
        record = d.state.read_state(sorted(deferred_rows)[0]).tags
        reason = next(s for s in record.values() if s.state == drift.DEFERRED)
        assert reason.refill_at and f"pull budget of {d.proxy.host}" in (reason.reason or "")
        assert rounds < 6, f"not done after {rounds} windows: {now}"
        limiter.refill()
        d.calls.reset()
        d.deliver_after_delay([b for b, _ in waiting], monkeypatch.setattr)
        responses, _ = d.drain()
        result.responses = responses  # failures of this round
    assert per_window == [9, 9, 9]
    assert limiter.rejected == 0 and limiter.spent == 27
    for (row, tag), index in pushed.items():
        assert d.ecr.tags(f"mirror/{row}")[tag] == index.digest


def test_without_the_headers_nothing_changes(deployment, monkeypatch):
    """No ratelimit headers: no budget item, no DynamoDB request beyond those of a pass without a budget."""
    d = deployment
    pushed = seed(d)
    d.fresh_containers()
    result = d.run_pass()
    assert not result.failures and set(states(d).values()) == {drift.IN_SYNC}
    assert list(d.state._partition(BUDGET_PK, "Query (budgets)")) == []
    updates = [p for op, p in d.calls.params if op in ("UpdateItem", "GetItem") and p.get("Key", {}).get("pk", {}).get("S") == BUDGET_PK]
    assert updates == []
    assert len(pushed) == ROWS * TAGS


def test_the_headers_cost_no_write_on_an_unchanged_pass(deployment, proxy_factory):
    d = deployment
    hub(d, proxy_factory)
    seed(d, rows=1, tags=3)
    d.fresh_containers()
    d.run_pass()
    assert set(states(d).values()) == {drift.IN_SYNC}
    d.calls.reset()
    d.run_pass()  # unchanged: HEADs only
    budget_writes = [p for op, p in d.calls.params if op == "UpdateItem" and p["Key"]["pk"]["S"] == BUDGET_PK]
    assert len(budget_writes) <= 0.1 * 3


@pytest.mark.parametrize("retry_after", [True, False], ids=["with-retry-after", "without-retry-after"])
def test_a_429_defers_the_tag_and_the_row_comes_back(deployment, proxy_factory, monkeypatch, retry_after):
    """Someone pulls by hand from the same address between the service's HEAD and its GET: the GET meets the
    429. The tag is deferred (not failed, no retry into the wall), the row goes back with a delay, a delivery
    before the refill does nothing, and after the refill the row finishes."""
    d = deployment
    limiter = hub(d, proxy_factory, retry_after=retry_after)
    pushed = seed(d, rows=1, tags=1)
    limiter.spend_at_next_pull = True  # a hand pull spends the window just before the service's first GET
    d.fresh_containers()
    result = d.run_pass()
    assert not result.failures
    assert states(d) == {("app0", "v0"): drift.DEFERRED}
    assert limiter.rejected == 1, "the 429 was retried"
    waiting = d.waiting()
    assert [b["id"] for b, _ in waiting] == ["app0"] and 0 < waiting[0][1] <= 900
    # delivered too early (before not_before): sent again, nothing asked upstream
    d.calls.reset()
    before = len(d.proxy.requests)
    d.sqs.send_message(QueueUrl=d.queue_url, MessageBody=json.dumps(waiting[0][0]))
    d.drain()
    assert len(d.proxy.requests) == before
    assert [b["id"] for b, _ in d.waiting()] == ["app0"]
    # after the refill
    limiter.refill()
    d.calls.reset()
    d.deliver_after_delay([waiting[0][0]], monkeypatch.setattr)
    d.drain()
    assert states(d) == {("app0", "v0"): drift.IN_SYNC}
    assert d.ecr.tags("mirror/app0")["v0"] == pushed[("app0", "v0")].digest
    assert limiter.rejected == 1


def test_two_syncs_at_once_share_one_budget_and_never_overspend(deployment, proxy_factory):
    """Two `ecr-mirror sync` processes over the same table at once: each process has its own budget object; the
    state table's conditional updates keep their sum within the window."""
    d = deployment
    limiter = hub(d, proxy_factory)
    seed(d)
    procs = [subprocess.Popen([ECR_MIRROR, "sync", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode in (0, 4), err
        # a tag the other sync is copying is "skipped" (issue 12's lease): that one reports it
        assert all(o["state"] in (drift.IN_SYNC, drift.DEFERRED) or o["action"] == "skipped" for o in json.loads(out)), out
        assert not any(o["error"] for o in json.loads(out)), out
    assert limiter.rejected == 0
    assert limiter.current.pulls <= LIMIT - RESERVE
    assert drift.DEFERRED in set(states(d).values())
    # `ecr-mirror status` shows each deferred tag with its reason and refill time
    table = subprocess.run([ECR_MIRROR, "status"], capture_output=True, text=True, check=True).stdout
    deferred_lines = [line for line in table.splitlines() if " deferred " in line]
    assert len(deferred_lines) == list(states(d).values()).count(drift.DEFERRED)
    assert all(f"pull budget of {d.proxy.host}" in line and "refill expected at" in line for line in deferred_lines), table
    records = json.loads(subprocess.run([ECR_MIRROR, "status", "--json"], capture_output=True, text=True, check=True).stdout)
    for r in records:
        assert (r["state"] == drift.DEFERRED) == bool(r["refill_at"]), r


def test_the_budget_metrics_are_emitted_per_registry(deployment, proxy_factory):
    d = deployment
    hub(d, proxy_factory)
    seed(d)
    d.fresh_containers()
    result = d.run_pass()
    docs = [json.loads(line) for line in result.output.splitlines() if line.startswith("{") and '"_aws"' in line]
    per_registry = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if [metrics.REGISTRY_DIMENSION, "service"] in directive["Dimensions"]:
                for m in directive["Metrics"]:
                    value = doc[m["Name"]]
                    per_registry[(doc[metrics.REGISTRY_DIMENSION], m["Name"])] = sum(value) if isinstance(value, list) else value
    host = d.proxy.host
    assert per_registry[(host, metrics.PULLS_SPENT)] == 9
    assert per_registry[(host, metrics.TAGS_DEFERRED)] == 6
    assert per_registry[(host, metrics.PULLS_REMAINING)] <= RESERVE
    assert metrics.OLDEST_DEFERRAL_SECONDS in result.metrics


def test_the_shared_view_is_taken_conditionally_and_announcements_respect_reservations(deployment):
    """The state table's budget item (moto behind DynamoDB's atomic conditional writes): eight takes racing for
    a window of 20 with a reserve of 2 get exactly 18 pulls; an announcement made while reservations are in
    flight counts them out; one after a quiet spell is the whole truth."""
    from concurrent.futures import ThreadPoolExecutor

    from ecr_mirror.budget import Allowance

    st = deployment.state
    assert st.budget_announce(Allowance("hub.test", 20, 600, 20, announced_at=1.0), started=1.0, quiet_before=0.0) == 20
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda n: st.budget_take("hub.test", 3, 2, 10.0), range(8)))
    assert sum(t is not None for t in taken) == 6
    view = st.budget_get("hub.test")
    assert (view.remaining, view.outstanding) == (2, 18)
    # upstream says 15 left (3 pulls spent), to a request that left after the takes: 18 pulls are still reserved
    assert st.budget_announce(Allowance("hub.test", 20, 600, 15, announced_at=11.0), started=11.0, quiet_before=0.0) == -3
    st.budget_settle("hub.test", 3, 3, 12.0)  # a tag done: its 3 pulls spent
    # a request that left before that settle cannot tell whether it counted those 3: nothing written
    assert st.budget_announce(Allowance("hub.test", 20, 600, 15, announced_at=13.0), started=11.5, quiet_before=0.0) is None
    # once nothing has been taken for a while, an announcement is the whole truth
    assert st.budget_announce(Allowance("hub.test", 20, 600, 20, announced_at=2000.0), started=2000.0,
                              quiet_before=1000.0) == 20
    assert st.budget_get("hub.test").outstanding == 0


def test_when_pulls_are_short_missing_tags_go_first_then_behind_then_repairs(deployment, proxy_factory, monkeypatch):
    """Three tags of one row need copies: v0 missing at ECR (deleted), v1 behind (upstream moved), v2 diverged
    (pushed over by hand). With pulls for one tag only, v0 is copied; with pulls for one more, v1; then v2."""
    d = deployment
    limiter = hub(d, proxy_factory)
    seed(d, rows=1, tags=3)
    d.fresh_containers()
    d.run_pass()
    assert set(states(d).values()) == {drift.IN_SYNC}
    d.ecr.client().batch_delete_image(repositoryName="mirror/app0", imageIds=[{"imageTag": "v0"}])
    moved = im.build_index([im.build_image("linux/amd64", seed=777, layers=1, layer_size=256),
                            im.build_image("linux/arm64/v8", seed=777, layers=1, layer_size=256)])
    im.push_index(d.upstream, "library/app0", moved, "v1")
    im.push_image(d.ecr, "mirror/app0", im.build_image("linux/amd64", seed=99), "v2", auth=d.ecr.auth)
    expected = {"v0": drift.DEFERRED, "v1": drift.DEFERRED, "v2": drift.DEFERRED}
    for reserve, copied in (("7", "v0"), ("5", "v1"), ("1", "v2")):  # 10 - reserve: pulls for 1 tag (3), then 2
        limiter.refill()
        monkeypatch.setenv("ECR_MIRROR_PULL_RESERVE", reserve)
        d.fresh_containers()
        d.run_pass(audit=True)  # the audit finds v0 missing and v2 diverged
        expected[copied] = drift.IN_SYNC
        assert {tag: s for (_, tag), s in states(d).items()} == expected, f"reserve {reserve}"
        assert limiter.rejected == 0
    assert d.ecr.tags("mirror/app0")["v1"] == moved.digest


def test_the_registry_client_holds_a_host_to_its_request_rate(registry, proxy_factory):
    """A configured cap (hostRates) on a real registry: requests counted per second of a fake clock that only
    the client's waits move (no time is measured)."""
    from ecr_mirror.reference import parse_reference
    from ecr_mirror.registry import RegistryClient

    proxy = proxy_factory(registry)
    index = im.build_index([im.build_image("linux/amd64", seed=5)])
    im.push_index(registry, "library/app", index, "1")
    now = [0.0]
    client = RegistryClient(sleep=lambda s: now.__setitem__(0, now[0] + s))
    client.pace_hosts({proxy.host: 2}, clock=lambda: now[0])
    seen: list[float] = []
    client.transport.observers.append(lambda host, method, status, headers: seen.append(now[0]))
    try:
        for _ in range(12):
            assert client.manifest_head(parse_reference(f"{proxy.host}/library/app:1")) is not None
    finally:
        client.http.close()
    per_second: dict[int, int] = {}
    for t in seen:
        per_second[int(t + 1e-6)] = per_second.get(int(t + 1e-6), 0) + 1
    assert len(proxy.requests) == len(seen) >= 12
    assert max(per_second.values()) <= 2 and len(per_second) >= 6
