"""Rows from the field (issue 13, kind 2 and pins): everything a row says reaches the target, or is a
visible state. Against real docker-registry processes, the ECR stand-in (tests/support/ecr) and moto.

- a row that changes (arch tags, target repository) converges on the next pass, the image not copied again;
  ``copy --arch-tags`` and ``assemble`` onto an image already there write its arch tags;
- a selection that matches nothing is ``no_tags`` (the selection, how many tags it was tried on, a metric);
- two rows written directly that select one target tag are both ``conflict``, and neither writes it (``add``
  and ``apply -f`` refuse such rows: tests/integration/test_rows_as_code.py);
- a pinned tag is mirrored by digest and never moves; a moved upstream tag is a note, not a change;
- a copy's warnings reach the tag's status, written when they change;
- a selection over the limit is an error, never a silent cut.
"""

from __future__ import annotations

import json

import boto3
import pytest

from ecr_mirror import metrics
from ecr_mirror import tags as tags_module
from tests.integration.helpers import copier, ref
from tests.integration.test_service import emf, golang_index, service  # noqa: F401 - the fixture
from tests.support import field as fl
from tests.support import images as im

WRITES = ("PUT", "POST", "PATCH", "DELETE")


def put_item(service, **row) -> None:
    """A row written directly (``put-item``), as any DynamoDB client may: no CLI check on the way."""
    boto3.resource("dynamodb").Table(service.table_name).put_item(Item=row)


def update_row(service, row_id: str, **attributes) -> None:
    table = boto3.resource("dynamodb").Table(service.table_name)
    item = table.get_item(Key={"id": row_id}, ConsistentRead=True)["Item"]
    table.put_item(Item={**item, **attributes})


def records(service) -> dict[tuple[str, str | None], dict]:
    return {(r["id"], r["tag"]): r for r in service.status()}


def scheduled_pass(service) -> dict:
    service.run_schedule()
    response = service.drain()
    assert response == {"batchItemFailures": []}
    return response


# ---------------------------------------------------------------------- convergence


def test_a_row_gaining_arch_tags_gets_them_on_the_next_pass_without_copying_the_image(service, capsys):
    """The issue's example: arch_tags added to a row whose tag is in sync; before, the tag stayed `in_sync`
    ("target holds the upstream image") and the arch tags were never written."""
    index = golang_index(31)
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/app")
    scheduled_pass(service)
    ecr, auth = service.ecr, service.ecr.auth
    assert im.list_tags(ecr, "mirror/app", auth=auth) == ["v1"]
    update_row(service, "app", arch_tags=True)
    ecr.reset_counts()
    service.proxy.reset()
    scheduled_pass(service)
    assert im.list_tags(ecr, "mirror/app", auth=auth) == ["v1", "v1-amd64", "v1-arm64"]
    for tag, platform in (("v1-amd64", "linux/amd64"), ("v1-arm64", "linux/arm64/v8")):
        assert im.head_manifest(ecr, "mirror/app", tag, auth=auth) == index.image_for(platform).digest
    # counted: no blob moved, the image's own tag not written again, nothing read upstream but the one HEAD
    assert ecr.count("POST") == ecr.count("PATCH") == 0 and ecr.count("GET", "/blobs/") == 0
    assert ecr.count("PUT", path_regex=r"/manifests/v1-(amd64|arm64)$") == 2
    assert ecr.count("PUT", path_regex=r"/manifests/v1$") == 0
    assert service.proxy.requests == [("HEAD", "/v2/app/manifests/v1")]
    record = service.state("app", "v1")
    assert record["state"] == "in_sync" and record["target_digest"] == index.digest
    # converged: the next pass is settled again (nothing asked of ECR)
    ecr.reset_counts()
    scheduled_pass(service)
    assert ecr.count() == 0 and ecr.count(face="api") == 0


def test_an_arch_tag_overwritten_by_hand_is_found_by_the_audit_and_repaired(service):
    """The tag a Graviton node pulls by name: an arch tag pushed over by hand is drift. The copy records which
    image each arch tag points at; the audit compares that with the repository listing it reads anyway
    (no extra request), finds the tag ``broken`` and the repair writes it back."""
    index = golang_index(35)
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--arch-tags", "--target-repository", "mirror/app")
    scheduled_pass(service)
    ecr, auth = service.ecr, service.ecr.auth
    arm64 = index.image_for("linux/arm64/v8").digest
    intruder = im.build_image("linux/arm64/v8", seed=36)
    im.push_image(ecr, "mirror/app", intruder, "v1-arm64", auth=auth)

    plain = json.loads(service.cli("sync", "--json").output)  # not an audit: settled, nothing asked of ECR
    assert [(r["tag"], r["state"], r["settled"]) for r in plain] == [("v1", "in_sync", True)]
    assert im.head_manifest(ecr, "mirror/app", "v1-arm64", auth=auth) == intruder.digest

    ecr.reset_counts()
    audit = json.loads(service.cli("sync", "--audit", "--json").output)
    assert [(r["tag"], r["before"], r["state"], r["action"]) for r in audit] == [("v1", "broken", "in_sync", "copied")]
    assert f"arch tag v1-arm64 points at {intruder.digest}, not {arm64}" in audit[0]["reason"]
    assert im.head_manifest(ecr, "mirror/app", "v1-arm64", auth=auth) == arm64
    assert im.head_manifest(ecr, "mirror/app", "v1-amd64", auth=auth) == index.image_for("linux/amd64").digest
    assert ecr.count("POST") == 0 and ecr.count("PATCH") == 0  # the repair moved no blob: the children are there
    record = service.state("app", "v1")
    assert record["state"] == "in_sync" and record["last_drift_state"] == "broken"

    again = json.loads(service.cli("sync", "--audit", "--json").output)  # repaired: the next audit finds nothing
    assert [(r["tag"], r["before"], r["action"]) for r in again] == [("v1", "in_sync", "")]


def test_a_row_moved_to_another_repository_is_mirrored_there_on_the_next_pass(service):
    index = golang_index(33)
    im.push_index(service.upstream, "app", index, "v1")
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/one")
    service.cli("sync")
    update_row(service, "app", target_repository="mirror/two")
    result = json.loads(service.cli("sync", "--json").output)
    assert [(r["tag"], r["state"], r["before"], r["action"]) for r in result] == [("v1", "in_sync", "missing", "copied")]
    assert im.head_manifest(service.ecr, "mirror/two", "v1", auth=service.ecr.auth) == index.digest
    assert service.ecr.count(op="CreateRepository", face="api") == 2


def test_a_row_turning_referrers_on_gets_the_referrers_of_its_image_already_in_sync(service):
    from tests.support.cosign import CosignKey, VerificationError, sign, verify

    index = golang_index(44)
    im.push_index(service.upstream, "app", index, "v1")
    key = CosignKey.generate()
    sign(service.upstream, "app", index.digest, key)
    service.add("app", "--source", service.source("app"), "--tag", "v1", "--target-repository", "mirror/app",
                "--no-referrers")
    service.cli("sync")
    ecr, auth = service.ecr, service.ecr.auth
    with pytest.raises(VerificationError):
        verify(ecr, "mirror/app", index.digest, key, auth=auth)
    update_row(service, "app", referrers=True)
    ecr.reset_counts()
    (result,) = json.loads(service.cli("sync", "--json").output)
    assert (result["state"], result["referrers"]["copied"]) == ("in_sync", 1)
    assert verify(ecr, "mirror/app", index.digest, key, auth=auth)
    assert ecr.count("PUT", path_regex=r"/manifests/v1$") == 0  # the image itself was not written again
    assert service.state("app", "v1")["referrers_copied"] == 1


def test_copy_arch_tags_onto_an_existing_tag_writes_them(registry_pair, proxy_factory):
    """`ecr-mirror copy --arch-tags` onto a tag already holding the image: before, `"arch_tags": []`."""
    src, dst = registry_pair
    index = golang_index(34)
    im.push_index(src, "app", index, "v1")
    front, back = proxy_factory(src), proxy_factory(dst)
    with copier() as c:
        c.copy(ref(front.host, "app:v1"), ref(back.host, "app:v1"))
        front.reset()
        back.reset()
        report = c.copy(ref(front.host, "app:v1"), ref(back.host, "app:v1"), arch_tags=True)
        assert report.unchanged and report.arch_tags == ["v1-amd64", "v1-arm64"]
        assert front.requests == [("HEAD", "/v2/app/manifests/v1")]  # nothing read upstream but the HEAD
        assert [m for m, _ in back.requests if m in WRITES] == ["PUT", "PUT"]  # the two arch tags, no blob
        for platform, tag in (("linux/amd64", "v1-amd64"), ("linux/arm64/v8", "v1-arm64")):
            assert im.head_manifest(dst, "app", tag) == index.image_for(platform).digest
        back.reset()
        again = c.copy(ref(front.host, "app:v1"), ref(back.host, "app:v1"), arch_tags=True)
    assert again.arch_tags == [] and [m for m, _ in back.requests if m in WRITES] == []


def test_copy_arch_tags_onto_an_existing_single_image_and_assemble(registry_pair):
    src, dst = registry_pair
    amd, arm = im.build_image("linux/amd64", seed=35), im.build_image("linux/arm64/v8", seed=35)
    im.push_image(src, "app", amd, "amd")
    im.push_image(src, "app", arm, "arm")
    with copier() as c:
        c.copy(ref(src.host, "app:amd"), ref(dst.host, "app:single"))
        assert c.copy(ref(src.host, "app:amd"), ref(dst.host, "app:single"), arch_tags=True).arch_tags == ["single-amd64"]
        sources = [ref(src.host, "app:amd"), ref(src.host, "app:arm")]
        first = c.assemble(ref(dst.host, "app:joined"), sources)
        assert first.arch_tags == []
        again = c.assemble(ref(dst.host, "app:joined"), sources, arch_tags=True)
    assert again.unchanged and again.arch_tags == ["joined-amd64", "joined-arm64"]
    assert im.head_manifest(dst, "app", "joined-arm64") == arm.digest
    assert im.head_manifest(dst, "app", "single-amd64") == amd.digest


# ---------------------------------------------------------------------- a selection that matches nothing


def test_a_selection_that_matches_nothing_is_a_visible_state_with_a_metric(service, capsys):
    for tag in ("1.0", "1.1", "latest"):
        im.push_image(service.upstream, "app", im.build_image("linux/amd64", seed=36), tag)
    source = service.source("app")
    put_item(service, id="pattern", source=source, tag_pattern=r"2\..*")
    put_item(service, id="range", source=source, versions=">=2")
    put_item(service, id="excluded", source=source, tag_pattern=r"1\..*", exclude_patterns=[r"1\.[01]"],
             target_repository="mirror/excluded")
    capsys.readouterr()
    scheduled_pass(service)
    assert emf(capsys.readouterr().out)[metrics.ROWS_MATCHED_NOTHING] == 3
    got = records(service)
    expected = {"pattern": r"tag_pattern '2\\..*'", "range": "versions '>=2'",
                "excluded": r"tag_pattern '1\\..*', exclude_patterns '1\\.[01]'"}
    for row_id, selection in expected.items():
        record = got[(row_id, None)]
        assert record["state"] == "no_tags" and record["pattern"] == selection and record["tags_tried"] == 3, record
        assert record["error"] == f"{selection} selected none of 3 upstream tags"
    result = service.cli("sync", "--id", "range", "--json", ok=False)
    assert result.exit_code == 4  # not in sync: a pipeline gate notices a row that mirrors nothing
    out = result.output
    assert json.loads(out) == [{"id": "range", "tag": None, "state": "no_tags",
                                "error": "versions '>=2' selected none of 3 upstream tags"}]
    assert service.ecr.count("PUT") == 0


# ---------------------------------------------------------------------- two rows, one target tag


def test_two_rows_selecting_one_target_tag_are_in_conflict_and_neither_writes_it(service, capsys):
    one, two, three = golang_index(37), golang_index(38), golang_index(39)
    im.push_index(service.upstream, "one", one, "v1")
    im.push_index(service.upstream, "two", two, "v1")
    im.push_index(service.upstream, "two", three, "v2")
    put_item(service, id="a", source=service.source("one"), tags=["v1"], target_repository="mirror/shared")
    put_item(service, id="b", source=service.source("two"), tags=["v1", "v2"], target_repository="mirror/shared")
    ecr, auth = service.ecr, service.ecr.auth
    for run in ("schedule", "cli"):
        if run == "schedule":
            capsys.readouterr()
            scheduled_pass(service)  # not retried: a conflict is the owners' to settle, not a failure
            assert emf(capsys.readouterr().out)[metrics.TAGS_IN_CONFLICT] == 2  # alarms: RowConflicts
        else:
            result = service.cli("sync", ok=False)
            assert result.exit_code == 1, result.output
            assert "a:v1  conflict" in result.output and "row 'b' also writes mirror/shared:v1" in result.output
        got = records(service)
        assert got[("a", "v1")]["state"] == got[("b", "v1")]["state"] == "conflict"
        assert "row 'b' also writes mirror/shared:v1" in got[("a", "v1")]["error"]
        assert "row 'a' also writes mirror/shared:v1" in got[("b", "v1")]["error"]
        assert got[("b", "v2")]["state"] == "in_sync"  # what only one row selects is mirrored
        assert ecr.count("PUT", path_regex=r"/manifests/v1$") == 0  # counted at the target: written by neither
        assert im.list_tags(ecr, "mirror/shared", auth=auth) == ["v2"]
    # a pattern row of the same source selects v1 too: in conflict with b as well, its other tags mirrored
    put_item(service, id="c", source=service.source("two"), tag_pattern=r"v1|v9", target_repository="mirror/shared")
    put_item(service, id="d", source=service.source("two"), tag_pattern=r"v2", target_repository="mirror/other")
    scheduled_pass(service)
    got = records(service)
    assert got[("c", "v1")]["state"] == "conflict" and got[("d", "v2")]["state"] == "in_sync"
    assert ecr.count("PUT", path_regex=r"/manifests/v1$") == 0
    # the owners settle it: b and c stop selecting v1; a's tag is written on the next pass
    update_row(service, "b", tags=["v2"])
    boto3.resource("dynamodb").Table(service.table_name).delete_item(Key={"id": "c"})
    scheduled_pass(service)
    assert service.state("a", "v1")["state"] == "in_sync"
    assert im.head_manifest(ecr, "mirror/shared", "v1", auth=auth) == one.digest


# ---------------------------------------------------------------------- pinned digests


def test_a_pinned_tag_is_mirrored_by_digest_and_never_moves(service):
    old, new = golang_index(40), golang_index(41)
    im.push_index(service.upstream, "app", old, "1.22")
    service.add("pin", "--source", service.source("app"), "--tag", f"1.22@{old.digest}", "--target-repository", "mirror/pin")
    service.cli("sync")
    ecr, auth = service.ecr, service.ecr.auth
    assert im.head_manifest(ecr, "mirror/pin", "1.22", auth=auth) == old.digest
    record = service.state("pin", "1.22")
    assert record["state"] == "in_sync" and record["pinned_digest"] == old.digest and record["note"] is None
    # upstream's tag moves: status says so, nothing at the target changes; an unchanged pin costs one HEAD
    im.push_index(service.upstream, "app", new, "1.22")
    service.proxy.reset()
    ecr.reset_counts()
    for _ in range(2):
        assert service.cli("sync").exit_code == 0
        assert service.proxy.requests == [("HEAD", "/v2/app/manifests/1.22")]
        service.proxy.reset()
    assert ecr.count() == 0 and ecr.count(face="api") == 0
    assert im.head_manifest(ecr, "mirror/pin", "1.22", auth=auth) == old.digest
    record = service.state("pin", "1.22")
    assert record["state"] == "in_sync" and record["upstream_tag_digest"] == new.digest
    assert record["note"] == f"pinned to {old.digest}; the upstream tag points at {new.digest}"
    assert record["error"] is None  # informational: no failure, no alarm
    written = record["last_attempt"]
    service.cli("sync")
    assert service.state("pin", "1.22")["last_attempt"] == written  # said once, not written every pass
    table = service.cli("status").output
    assert f"the upstream tag points at {new.digest}" in table
    # the pin changed by its owner: the new digest is mirrored
    update_row(service, "pin", tags=[f"1.22@{new.digest}"])
    service.cli("sync")
    assert im.head_manifest(ecr, "mirror/pin", "1.22", auth=auth) == new.digest
    assert service.state("pin", "1.22")["note"] is None


def test_a_pinned_tag_whose_upstream_tag_is_gone_stays_mirrored(service):
    index = golang_index(42)
    im.push_index(service.upstream, "app", index, "keep")
    put_item(service, id="pin", source=service.source("app"), digests={"1.0": index.digest},
             target_repository="mirror/pin")
    service.cli("sync")
    assert im.head_manifest(service.ecr, "mirror/pin", "1.0", auth=service.ecr.auth) == index.digest
    record = service.state("pin", "1.0")
    assert record["state"] == "in_sync" and record["note"] == f"pinned to {index.digest}; the upstream tag does not exist (any more)"


def test_a_pin_to_a_digest_upstream_does_not_have_is_the_rows_error_not_a_retried_failure(service):
    """A typo in a pin: ``invalid`` naming the pin and the repository (sync exits 1, --check too), nothing
    written at ECR, and the worker does not hand the row back for retries (it would end in the DLQ every pass)."""
    index = golang_index(43)
    im.push_index(service.upstream, "app", index, "1.22")
    bogus = "sha256:" + "a" * 64
    service.add("pin", "--source", service.source("app"), "--tag", f"1.22@{bogus}", "--target-repository", "mirror/pin")
    for args in (("sync", "--check", "--json"), ("sync", "--json")):
        result = service.cli(*args, ok=False)
        assert result.exit_code == 1, result.output
        (line,) = json.loads(result.output)
        assert line["state"] == "invalid" and line["action"] == ""
        assert f"tag 1.22 is pinned to {bogus}, which {service.source('app')} does not have" in line["error"]
    assert service.ecr.tags("mirror/pin") == {}
    service.run_schedule()
    assert service.drain() == {"batchItemFailures": []}  # the row's error: not retried
    assert service.state("pin", "1.22")["state"] == "invalid"


# ---------------------------------------------------------------------- warnings into the status


def test_copy_warnings_reach_the_tag_status_written_when_they_change(monkeypatch, ecr, registry_factory, proxy_factory):
    from tests.integration.test_service import Service

    upstream = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    service = Service(monkeypatch, ecr, upstream, proxy_factory(upstream))
    index = fl.windows_manifest_list()
    im.push_index(upstream, "win/app", index, "ltsc")
    service.add("win", "--source", service.source("win/app"), "--tag", "ltsc", "--target-repository", "mirror/win")
    out = service.cli("sync").output
    assert "warning: 1 non-distributable layer(s) left out by design" in out
    record = service.state("win", "ltsc")
    assert record["warnings"] == ["1 non-distributable layer(s) left out by design (served from their urls; "
                                  "allow_nondistributable_artifacts copies them)"]
    written = record["last_attempt"]
    service.cli("sync", "--audit")  # looked at again: the warnings stand, nothing is written
    assert service.state("win", "ltsc")["last_attempt"] == written
    assert "left out by design" in service.cli("status").output
    # opted in, where the layer cannot be fetched: the copy's own warning replaces it
    update_row(service, "win", allow_nondistributable_artifacts=True)
    service.cli("sync")
    (warning,) = service.state("win", "ltsc")["warnings"]
    assert warning.startswith(f"non-distributable layer {next(d for c in index.children for d in c.foreign)} left out")


# ---------------------------------------------------------------------- no silent cut


def test_a_selection_over_the_limit_is_an_error_never_a_silent_cut(service, monkeypatch, capsys):
    monkeypatch.setattr(tags_module, "MAX_SELECTED_TAGS", 2)
    image = im.build_image("linux/amd64", seed=43)
    for tag in ("1.0", "1.1", "1.2"):
        im.push_image(service.upstream, "app", image, tag)
    put_item(service, id="many", source=service.source("app"), tag_pattern=r"1\..*")
    put_item(service, id="newest", source=service.source("app"), tag_pattern=r"1\..*", keep_latest=2,
             target_repository="mirror/newest")
    capsys.readouterr()
    scheduled_pass(service)  # not retried: the row needs its owner
    assert emf(capsys.readouterr().out)[metrics.ROWS_INVALID] == 1
    got = records(service)
    error = got[("many", None)]["error"]
    assert got[("many", None)]["state"] == "invalid"
    assert "matches 3 upstream tags, over the limit of 2" in error and "keep_latest" in error
    assert not [k for k in got if k[0] == "many" and k[1] is not None]  # no tag mirrored or recorded
    assert sorted(t for (r, t) in got if r == "newest") == ["1.1", "1.2"]  # keep_latest: the owner's own cut
    result = service.cli("sync", "--id", "many", ok=False)
    assert result.exit_code == 1 and "over the limit of 2" in result.output


def test_rows_users_add_directly_come_through_the_stream_with_their_peers_and_conflict(deployment):
    """A row put next to another that writes the same target tag: the stream function sends it with its peer
    (one Scan per batch of user changes), so the worker leaves the tag to neither, at once."""
    d = deployment
    index = golang_index(45)
    im.push_index(d.upstream, "app", index, "v1")
    source = f"{d.proxy.host}/app"
    with d.stream_records() as records:
        d.put_row({"id": "a", "source": source, "tags": ["v1"], "target_repository": "mirror/shared"})
        d.put_row({"id": "b", "source": source, "tags": ["v1"], "target_repository": "mirror/shared",
                   "platforms": ["linux/amd64"]})
        d.put_row({"id": "alone", "source": source, "tags": ["v1"], "target_repository": "mirror/alone"})
    d.fresh_containers()  # the handlers' clients, counted
    assert d.invoke_stream(records)["enqueued"] == 3
    assert d.calls.count("Scan") == 1
    messages = d.receive_all()
    assert sorted((b["id"], b["peers"]) for b in (json.loads(m["Body"]) for m in messages)) == [
        ("a", ["b"]), ("alone", []), ("b", ["a"])]
    d.invoke_worker(messages)
    states = {(row_id, tag): s.state for row_id, st in d.state.scan_states().items() for tag, s in st.tags.items()}
    assert states == {("a", "v1"): "conflict", ("b", "v1"): "conflict", ("alone", "v1"): "in_sync"}
    assert d.ecr.count("PUT", path_regex=r"mirror/shared/manifests/v1$") == 0
