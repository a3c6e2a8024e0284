"""Mirror-table rows: schema, validation, defaults, and a corpus of malformed rows.

Every malformed row must raise :class:`RowError` naming the row and the attribute at fault,
and nothing else: ``parse_row`` is fed whatever a user (or any DynamoDB client) wrote.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.config import DEFAULT_REPOSITORY_PREFIX
from ecr_mirror.errors import ConfigError, MirrorError, RowError
from ecr_mirror.manifest import Platform
from ecr_mirror.reference import Reference, is_valid_ecr_repository
from ecr_mirror.rows import (
    MAX_ASSEMBLE,
    MAX_PLATFORMS,
    MAX_SELECTED_TAGS,
    MAX_TAGS,
    SERVICE_ATTRIBUTES,
    USER_ATTRIBUTES,
    Row,
    conflict_peers,
    options_turned_on,
    record_applies,
    default_target_repository,
    is_enabled,
    parse_row,
    row_to_item,
    user_attributes,
)

DIGEST = "sha256:" + "a" * 64


def source_row(**overrides):
    item = {"id": "golang", "source": "docker.io/library/golang", "tags": ["1.22"]}
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


def assemble_row(**overrides):
    item = {"id": "app", "assemble": ["ghcr.io/org/app:1-amd64", "ghcr.io/org/app:1-arm64"], "tags": ["1"]}
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


# ---------------------------------------------------------------- valid rows


def test_minimal_source_row_gets_defaults():
    row = parse_row({"id": "golang", "source": "golang", "tags": ["1.22", "1.23"]})
    assert row == Row(
        id="golang",
        source=Reference("docker.io", "library/golang"),
        tags=("1.22", "1.23"),
        tag_pattern=None,
        keep_latest=None,
        platforms=None,
        target_repository="mirror/docker.io/library/golang",
        arch_tags=False,
        assemble=None,
        enabled=True,
    )
    assert not row.is_assemble and row.identical and not row.needs_tag_list
    assert DEFAULT_REPOSITORY_PREFIX == "mirror"


def test_full_source_row():
    row = parse_row(
        {
            "id": "node-22",
            "source": "ghcr.io/org/node",
            "tags": ["latest"],
            "tag_pattern": r"22\.\d+\.\d+-alpine",
            "keep_latest": Decimal("3"),
            "platforms": ["linux/amd64", "Linux/ARM64/v8"],
            "target_repository": "mirrors/node",
            "arch_tags": True,
            "enabled": False,
        }
    )
    assert row.source == Reference("ghcr.io", "org/node")
    assert row.tag_pattern == r"22\.\d+\.\d+-alpine" and row.keep_latest == 3 and isinstance(row.keep_latest, int)
    assert row.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
    assert row.target_repository == "mirrors/node"
    assert row.arch_tags is True and row.enabled is False
    assert row.needs_tag_list and not row.identical


def test_pattern_only_row_is_valid():
    row = parse_row(source_row(tags=..., tag_pattern=r"1\.2\d"))
    assert row.tags == () and row.tag_pattern == r"1\.2\d"


def test_int_keep_latest_and_string_sets_are_accepted():
    row = parse_row(
        source_row(tags={"b", "a"}, tag_pattern="x.*", keep_latest=2, platforms={"linux/arm64", "linux/amd64"})
    )
    assert row.tags == ("a", "b")  # a set has no order: sorted, so the row is deterministic
    assert [str(p) for p in row.platforms] == ["linux/amd64", "linux/arm64"]
    assert row.keep_latest == 2


def test_null_attributes_count_as_absent():
    row = parse_row(source_row(platforms=None, target_repository=None, arch_tags=None, enabled=None, keep_latest=None))
    assert row.platforms is None and row.enabled is True and row.arch_tags is False
    assert row.target_repository == "mirror/docker.io/library/golang"


def test_service_attributes_are_ignored():
    item = source_row(
        status={"1.22": {"state": "in_sync"}}, row_error="old problem", row_error_at="2026-01-01T00:00:00.000000Z"
    )
    assert parse_row(item) == parse_row(source_row())
    assert set(SERVICE_ATTRIBUTES) == {"status", "row_error", "row_error_at"}


@pytest.mark.parametrize(
    ("source", "prefix", "expected"),
    [
        ("golang", "mirror", "mirror/docker.io/library/golang"),
        ("index.docker.io/library/golang", "mirror", "mirror/docker.io/library/golang"),
        ("bitnami/redis", "mirror", "mirror/docker.io/bitnami/redis"),
        ("ghcr.io/org/app", "mirror", "mirror/ghcr.io/org/app"),
        ("registry.k8s.io/pause", "ecr-mirror/upstream", "ecr-mirror/upstream/registry.k8s.io/pause"),
        ("public.ecr.aws/docker/library/alpine", "", "public.ecr.aws/docker/library/alpine"),
        ("localhost:5000/team/app", "mirror", "mirror/localhost-5000/team/app"),
        ("127.0.0.1:5000/app", "/mirror/", "mirror/127.0.0.1-5000/app"),
        ("[::1]:5000/app", "mirror", "mirror/1-5000/app"),
        ("Quay.IO/org/app", "mirror", "mirror/quay.io/org/app"),
    ],
)
def test_default_target_repository(source, prefix, expected):
    row = parse_row({"id": "r", "source": source, "tags": ["1"]}, prefix=prefix)
    assert row.target_repository == expected
    assert is_valid_ecr_repository(row.target_repository)


def test_default_target_that_is_no_valid_ecr_name_asks_for_target_repository():
    # distribution allows "__" and "--"; ECR allows only single separators
    with pytest.raises(RowError) as info:
        parse_row(source_row(source="docker.io/someone/foo__bar"))
    assert info.value.attribute == "target_repository"
    assert "set target_repository" in str(info.value)
    assert parse_row(source_row(source="docker.io/someone/foo__bar", target_repository="mirror/foo-bar"))


def test_bad_prefix_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_row(source_row(), prefix="Mirror")
    with pytest.raises(ConfigError):
        default_target_repository(Reference("docker.io", "library/golang"), "a//b")


def test_assemble_rows_default_to_their_common_repository():
    row = parse_row(assemble_row())
    assert row.is_assemble and row.source is None and not row.identical
    assert row.assemble == (
        Reference("ghcr.io", "org/app", "1-amd64"),
        Reference("ghcr.io", "org/app", "1-arm64"),
    )
    assert row.tags == ("1",)
    assert row.target_repository == "mirror/ghcr.io/org/app"


def test_assemble_rows_from_several_repositories_default_to_assembled_id():
    row = parse_row(assemble_row(id="joined", assemble=["ghcr.io/org/app-amd64:1", f"quay.io/org/app-arm64@{DIGEST}"]))
    assert row.target_repository == "mirror/assembled/joined"
    assert row.assemble[1].digest == DIGEST


def test_assemble_row_with_id_unfit_for_a_repository_needs_target_repository():
    item = assemble_row(id="Joined:App", assemble=["a.io/x:1", "b.io/y:1"])
    with pytest.raises(RowError) as info:
        parse_row(item)
    assert info.value.attribute == "target_repository"
    assert parse_row({**item, "target_repository": "mirror/joined"}).target_repository == "mirror/joined"


def test_fingerprint_follows_everything_that_changes_what_the_target_holds():
    """Issue 13: arch tags, non-distributable layers, referrers and the target repository change it too; the
    recorded digests still apply after a change of options (only work is added), not of source or repository."""
    base = parse_row(source_row())
    assert base.fingerprint == parse_row(source_row(tags=["other"], enabled=False)).fingerprint
    for changed in ({"platforms": ["linux/amd64"]}, {"source": "ghcr.io/org/golang"},
                    {"target_repository": "elsewhere/golang"}, {"arch_tags": True},
                    {"allow_nondistributable_artifacts": True}, {"referrers": False}):
        other = parse_row(source_row(**changed)).fingerprint
        assert other != base.fingerprint, changed
        assert record_applies(base.fingerprint, other) is (set(changed) <= OPTIONS), changed
    what, where, how = base.fingerprint.split(".")
    assert (len(what), len(where), how) == (16, 8, "a0n0r1")
    arch = parse_row(source_row(arch_tags=True, referrers=False)).fingerprint
    assert options_turned_on(base.fingerprint, arch) == {"arch_tags"}
    assert options_turned_on(arch, base.fingerprint) == {"referrers"}
    assert options_turned_on(what, arch) == {"arch_tags"}  # a record from before: arch tags were never written
    assert options_turned_on(what, base.fingerprint) == set() and record_applies(what, arch)


OPTIONS = {"arch_tags", "allow_nondistributable_artifacts", "referrers"}


def test_conflict_peers_are_rows_that_may_select_the_same_tag_in_the_same_repository():
    rows = [parse_row(r) for r in (
        source_row(id="a", tags=["1.22"]), source_row(id="b", tags=["1.22", "1.23"]), source_row(id="c", tags=["1.24"]),
        source_row(id="d", tags=None, tag_pattern=r"1\.2\d"), source_row(id="e", tags=["1.22"], enabled=False),
        source_row(id="f", tags=["1.22"], target_repository="other/golang"),
    )]
    assert conflict_peers(rows) == {"a": ["d", "b"], "b": ["d", "a"], "c": ["d"], "d": ["a", "b", "c"]}


def test_platform_variants_normalise():
    row = parse_row(source_row(platforms=["linux/arm/v6", "linux/arm", "linux/arm64"]))
    assert [str(p) for p in row.platforms] == ["linux/arm/v6", "linux/arm", "linux/arm64"]


# ---------------------------------------------------------------- the malformed-row corpus

HUGE_TAGS = [f"t{i}" for i in range(MAX_TAGS + 1)]
HUGE_PLATFORMS = [f"linux/arch{i}" for i in range(MAX_PLATFORMS + 1)]
HUGE_ASSEMBLE = [f"ghcr.io/org/app:{i}" for i in range(MAX_ASSEMBLE + 1)]

CORPUS = [
    # wrong types
    ("id is a number", source_row(id=Decimal(7)), "id"),
    ("id is a list", source_row(id=["golang"]), "id"),
    ("id missing", source_row(id=...), "id"),
    ("id empty", source_row(id=""), "id"),
    ("id with a space", source_row(id="go lang"), "id"),
    ("id with a newline", source_row(id="golang\n"), "id"),
    ("id too long", source_row(id="x" * 257), "id"),
    ("source is a number", source_row(source=Decimal(1)), "source"),
    ("source is a list", source_row(source=["golang"]), "source"),
    ("source is a map", source_row(source={"S": "golang"}), "source"),
    ("source is binary", source_row(source=b"golang"), "source"),
    ("tags is a string", source_row(tags="1.22"), "tags"),
    ("tags holds a number", source_row(tags=["1.22", Decimal(1)]), "tags"),
    ("tags is a map", source_row(tags={"1.22": True}), "tags"),
    ("tags is a number set", source_row(tags={Decimal(1)}), "tags"),
    ("tag_pattern is a list", source_row(tag_pattern=[".*"]), "tag_pattern"),
    ("keep_latest is a string", source_row(tag_pattern=".*", keep_latest="3"), "keep_latest"),
    ("keep_latest is a boolean", source_row(tag_pattern=".*", keep_latest=True), "keep_latest"),
    ("keep_latest is a float", source_row(tag_pattern=".*", keep_latest=2.0), "keep_latest"),
    ("keep_latest is fractional", source_row(tag_pattern=".*", keep_latest=Decimal("2.5")), "keep_latest"),
    ("keep_latest is zero", source_row(tag_pattern=".*", keep_latest=Decimal(0)), "keep_latest"),
    ("keep_latest is negative", source_row(tag_pattern=".*", keep_latest=-1), "keep_latest"),
    ("keep_latest is NaN", source_row(tag_pattern=".*", keep_latest=Decimal("NaN")), "keep_latest"),
    ("keep_latest is infinite", source_row(tag_pattern=".*", keep_latest=Decimal("Infinity")), "keep_latest"),
    ("keep_latest is huge", source_row(tag_pattern=".*", keep_latest=Decimal("1e1000")), "keep_latest"),
    ("keep_latest over the limit", source_row(tag_pattern=".*", keep_latest=MAX_SELECTED_TAGS + 1), "keep_latest"),
    ("platforms is a string", source_row(platforms="linux/amd64"), "platforms"),
    ("platforms holds a map", source_row(platforms=[{"os": "linux"}]), "platforms"),
    ("target_repository is a number", source_row(target_repository=Decimal(3)), "target_repository"),
    ("arch_tags is a string", source_row(arch_tags="true"), "arch_tags"),
    ("arch_tags is a number", source_row(arch_tags=Decimal(1)), "arch_tags"),
    ("allow_nondistributable_artifacts is a string", source_row(allow_nondistributable_artifacts="yes"),
     "allow_nondistributable_artifacts"),
    ("enabled is a number", source_row(enabled=1), "enabled"),
    ("enabled is a string", source_row(enabled="false"), "enabled"),
    ("assemble is a string", assemble_row(assemble="ghcr.io/org/app:1"), "assemble"),
    ("assemble holds a number", assemble_row(assemble=["ghcr.io/org/app:1", Decimal(2)]), "assemble"),
    ("assemble is a set", assemble_row(assemble={"ghcr.io/org/app:1"}), "assemble"),
    # unknown attributes
    ("unknown attribute tag", source_row(tag="1.22"), "tag"),
    ("unknown attribute Source", source_row(Source="golang"), "Source"),
    ("unknown attribute platform", source_row(platform=["linux/amd64"]), "platform"),
    ("unknown attribute comment", source_row(comment="hello"), "comment"),
    # empty lists
    ("empty tags", source_row(tags=[]), "tags"),
    ("empty tags with a pattern", source_row(tags=[], tag_pattern=".*"), "tags"),
    ("empty platforms", source_row(platforms=[]), "platforms"),
    ("empty assemble", assemble_row(assemble=[]), "assemble"),
    ("empty string set of platforms", source_row(platforms=set()), "platforms"),
    # huge lists
    ("too many tags", source_row(tags=HUGE_TAGS), "tags"),
    ("too many platforms", source_row(platforms=HUGE_PLATFORMS), "platforms"),
    ("too many assemble references", assemble_row(assemble=HUGE_ASSEMBLE), "assemble"),
    # invalid regular expressions
    ("unbalanced parenthesis", source_row(tag_pattern="(1.2"), "tag_pattern"),
    ("unterminated class", source_row(tag_pattern="[a-"), "tag_pattern"),
    ("nothing to repeat", source_row(tag_pattern="*"), "tag_pattern"),
    ("reversed range", source_row(tag_pattern="a{2,1}"), "tag_pattern"),
    ("variable look-behind", source_row(tag_pattern="(?<=a+)b"), "tag_pattern"),
    ("empty pattern", source_row(tag_pattern=""), "tag_pattern"),
    ("unicode flag", source_row(tag_pattern="(?u)a"), "tag_pattern"),
    ("back-reference", source_row(tag_pattern=r"(\d)\1"), "tag_pattern"),
    # catastrophic backtracking
    ("(a+)+", source_row(tag_pattern="(a+)+$"), "tag_pattern"),
    ("(a*)*", source_row(tag_pattern="(a*)*b"), "tag_pattern"),
    ("(a|a)*", source_row(tag_pattern="(a|a)*b"), "tag_pattern"),
    ("(.*)*", source_row(tag_pattern="(.*)*"), "tag_pattern"),
    (r"(\d+\.?)+", source_row(tag_pattern=r"(\d+\.?)+-alpine"), "tag_pattern"),
    (r"(\w+\w)+", source_row(tag_pattern=r"(\w+\w)+!"), "tag_pattern"),
    ("(x+x+)+y", source_row(tag_pattern="(x+x+)+y"), "tag_pattern"),
    ("([a-z]+[0-9]*)+", source_row(tag_pattern="([a-z]+[0-9]*)+"), "tag_pattern"),
    (".*.*.*", source_row(tag_pattern=".*.*.*x"), "tag_pattern"),
    ("pattern too long", source_row(tag_pattern="a" * 257), "tag_pattern"),
    # references with spaces
    ("source with a trailing space", source_row(source="docker.io/library/golang "), "source"),
    ("source with a leading space", source_row(source=" golang"), "source"),
    ("source with an inner space", source_row(source="golang alpine"), "source"),
    ("source with a tab", source_row(source="golang\t"), "source"),
    ("assemble reference with a space", assemble_row(assemble=["ghcr.io/org/app:1 amd64"]), "assemble"),
    # uppercase repositories
    ("uppercase source repository", source_row(source="docker.io/Library/Golang"), "source"),
    ("uppercase ghcr repository", source_row(source="ghcr.io/Org/App"), "source"),
    ("uppercase assemble repository", assemble_row(assemble=["ghcr.io/Org/App:1"]), "assemble"),
    ("uppercase target repository", source_row(target_repository="Mirror/Golang"), "target_repository"),
    # digests of the wrong length (and other bad digests)
    ("source with a short digest", source_row(source="golang@sha256:abc"), "source"),
    ("assemble digest one short", assemble_row(assemble=["ghcr.io/org/app@sha256:" + "a" * 63]), "assemble"),
    ("assemble digest one long", assemble_row(assemble=["ghcr.io/org/app@sha256:" + "a" * 65]), "assemble"),
    ("assemble digest uppercase hex", assemble_row(assemble=["ghcr.io/org/app@sha256:" + "A" * 64]), "assemble"),
    ("assemble digest unknown algorithm", assemble_row(assemble=["ghcr.io/org/app@md5:" + "a" * 32]), "assemble"),
    # platforms
    ("platform without architecture", source_row(platforms=["linux"]), "platforms"),
    ("platform with four parts", source_row(platforms=["linux/arm64/v8/x"]), "platforms"),
    ("platform with empty architecture", source_row(platforms=["linux/"]), "platforms"),
    ("platform with empty os", source_row(platforms=["/amd64"]), "platforms"),
    ("platform with a space", source_row(platforms=["linux amd64"]), "platforms"),
    ("platform with a trailing space", source_row(platforms=["linux/amd64 "]), "platforms"),
    ("empty platform", source_row(platforms=[""]), "platforms"),
    ("duplicate platform", source_row(platforms=["linux/amd64", "linux/amd64"]), "platforms"),
    ("platform with and without default variant", source_row(platforms=["linux/arm64", "linux/arm64/v8"]), "platforms"),
    # tags
    ("tag starting with a dash", source_row(tags=["-bad"]), "tags"),
    ("tag starting with a dot", source_row(tags=[".bad"]), "tags"),
    ("tag too long", source_row(tags=["a" * 129]), "tags"),
    ("tag with a space", source_row(tags=["has space"]), "tags"),
    ("tag with a trailing newline", source_row(tags=["latest\n"]), "tags"),
    ("tag with non-ASCII", source_row(tags=["caf\u00e9"]), "tags"),
    ("empty tag", source_row(tags=[""]), "tags"),
    ("duplicate tag", source_row(tags=["1.22", "1.22"]), "tags"),
    # rules across attributes
    ("both source and assemble", source_row(assemble=["ghcr.io/org/app:1"]), "assemble"),
    ("neither source nor assemble", {"id": "x", "tags": ["1"]}, "source"),
    ("source without tags or pattern", source_row(tags=...), "tags"),
    ("keep_latest without tag_pattern", source_row(keep_latest=3), "keep_latest"),
    ("source with a tag", source_row(source="golang:1.22"), "source"),
    ("source with a digest", source_row(source=f"golang@{DIGEST}"), "source"),
    ("source with a scheme", source_row(source="https://ghcr.io/org/app"), "source"),
    ("assemble with two tags", assemble_row(tags=["1", "2"]), "tags"),
    ("assemble without a tag", assemble_row(tags=...), "tags"),
    ("assemble with a tag pattern", assemble_row(tag_pattern=".*"), "tag_pattern"),
    ("assemble with platforms", assemble_row(platforms=["linux/amd64"]), "platforms"),
    ("assemble reference without tag or digest", assemble_row(assemble=["ghcr.io/org/app"]), "assemble"),
    ("assemble reference listed twice", assemble_row(assemble=["ghcr.io/org/app:1", "ghcr.io/org/app:1"]), "assemble"),
    # target repositories
    ("target too short", source_row(target_repository="a"), "target_repository"),
    ("target too long", source_row(target_repository="a" * 257), "target_repository"),
    ("target with an empty component", source_row(target_repository="mirror//golang"), "target_repository"),
    ("target with a trailing slash", source_row(target_repository="mirror/golang/"), "target_repository"),
    ("target starting with a dash", source_row(target_repository="-mirror"), "target_repository"),
    ("target with double separators", source_row(target_repository="mirror/go__lang"), "target_repository"),
    ("target with a colon", source_row(target_repository="mirror/golang:1"), "target_repository"),
    ("target empty", source_row(target_repository=""), "target_repository"),
]


@pytest.mark.parametrize(("case", "item", "attribute"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_row_names_the_attribute(case, item, attribute):
    with pytest.raises(RowError) as info:
        parse_row(item)
    exc = info.value
    assert exc.attribute == attribute, f"{case}: {exc}"
    message = str(exc)
    assert f"attribute {attribute!r}" in message
    assert "\n" not in message and len(message) < 1000
    if isinstance(item.get("id"), str) and item["id"] in ("golang", "app"):
        assert message.startswith(f"row {item['id']!r}: attribute {attribute!r}: ")


def test_error_message_shape():
    with pytest.raises(RowError) as info:
        parse_row({"id": "golang", "source": "golang", "tags": ["1.22"], "platforms": ["linux"]})
    assert str(info.value).startswith("row 'golang': attribute 'platforms': invalid platform 'linux'")
    assert isinstance(info.value, MirrorError)


def test_non_mapping_item_is_a_row_error():
    for item in (None, "golang", ["id", "golang"], 3):
        with pytest.raises(RowError):
            parse_row(item)  # type: ignore[arg-type]


def test_non_string_attribute_names_are_rejected():
    with pytest.raises(RowError):
        parse_row({"id": "x", "source": "golang", "tags": ["1"], 3: "x"})  # type: ignore[dict-item]


def test_bad_id_is_shown_truncated():
    with pytest.raises(RowError) as info:
        parse_row(source_row(id="x y" * 1000))
    assert len(str(info.value)) < 300


def test_limits_are_inclusive():
    assert parse_row(source_row(tags=HUGE_TAGS[:MAX_TAGS]))
    assert parse_row(source_row(platforms=HUGE_PLATFORMS[:MAX_PLATFORMS]))
    assert parse_row(assemble_row(assemble=HUGE_ASSEMBLE[:MAX_ASSEMBLE]))
    assert parse_row(source_row(tag_pattern="a" * 256))
    assert parse_row(source_row(tags=["a" * 128]))
    assert parse_row(source_row(id="x" * 256))
    assert parse_row(source_row(tag_pattern=".*", keep_latest=MAX_SELECTED_TAGS))


# ---------------------------------------------------------------- CLI items


def test_row_to_item_keeps_only_what_was_given():
    item = row_to_item("golang", source="golang", tags=["1.22", "1.23"])
    assert item == {"id": "golang", "source": "golang", "tags": ["1.22", "1.23"]}
    item = row_to_item(
        "node", source="node", tags=(), tag_pattern=r"22\.\d+", keep_latest=3, platforms=("linux/amd64",),
        target_repository="mirrors/node", arch_tags=True, enabled=False,
    )
    assert item == {
        "id": "node", "source": "node", "tag_pattern": r"22\.\d+", "keep_latest": 3, "platforms": ["linux/amd64"],
        "target_repository": "mirrors/node", "arch_tags": True, "enabled": False,
    }
    windows = row_to_item("win", source="mcr.microsoft.com/windows/servercore", tags=["ltsc2022"],
                          allow_nondistributable_artifacts=True)
    assert windows["allow_nondistributable_artifacts"] is True and parse_row(windows).allow_nondistributable_artifacts
    plain = parse_row(row_to_item("win", source="mcr.microsoft.com/windows/servercore", tags=["ltsc2022"]))
    assert plain.allow_nondistributable_artifacts is False
    # the target's digest does not depend on it: the record applies, only the layers are to be copied
    assert record_applies(plain.fingerprint, parse_row(windows).fingerprint)
    assert options_turned_on(plain.fingerprint, parse_row(windows).fingerprint) == {"allow_nondistributable_artifacts"}
    item = row_to_item("app", assemble=iter(["ghcr.io/org/app:1-amd64", "ghcr.io/org/app:1-arm64"]), tags=["1"])
    assert item["assemble"] == ["ghcr.io/org/app:1-amd64", "ghcr.io/org/app:1-arm64"]
    assert parse_row(item).target_repository == "mirror/ghcr.io/org/app"


@pytest.mark.parametrize(
    ("kwargs", "attribute"),
    [
        ({"source": "golang"}, "tags"),
        ({"source": "golang", "tags": "1.22"}, "tags"),
        ({"source": "golang", "tags": ["1.22"], "platforms": ["linux"]}, "platforms"),
        ({"source": "golang", "tags": ["1.22"], "platforms": "linux/amd64"}, "platforms"),
        ({"source": "Golang", "tags": ["1.22"]}, "source"),
        ({"source": "golang", "tag_pattern": "(a+)+"}, "tag_pattern"),
        ({"source": "golang", "tags": ["1"], "keep_latest": 3}, "keep_latest"),
        ({"assemble": "ghcr.io/org/app:1", "tags": ["1"]}, "assemble"),
        ({"tags": ["1"]}, "source"),
    ],
)
def test_row_to_item_validates(kwargs, attribute):
    with pytest.raises(RowError) as info:
        row_to_item("r", **kwargs)
    assert info.value.attribute == attribute


def test_row_to_item_uses_the_prefix_for_validation():
    with pytest.raises(ConfigError):
        row_to_item("r", source="golang", tags=["1"], prefix="UPPER")


def test_user_attributes_drop_what_the_service_writes():
    item = source_row(status={"1": {}}, row_error="x", row_error_at="y")
    assert user_attributes(item) == source_row()
    assert set(USER_ATTRIBUTES) & set(SERVICE_ATTRIBUTES) == set()


# ---------------------------------------------------------------- properties

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

plausible_strings = st.sampled_from(
    [
        "golang", "docker.io/library/golang", "ghcr.io/org/app", "ghcr.io/org/app:1", f"golang@{DIGEST}",
        "Golang", "golang ", "", "linux/amd64", "linux/arm64/v8", "linux", "1.22", "latest", ".*", r"\d+",
        "(a+)+", "[", "mirror/x", "UPPER/x", "a" * 300, "x\n", "\x00", "\ud800", "localhost:5000/a",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    plausible_strings,
    st.binary(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.frozensets(st.one_of(st.text(max_size=10), plausible_strings), max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
keys = st.one_of(st.sampled_from(list(USER_ATTRIBUTES) + sorted(SERVICE_ATTRIBUTES)), st.text(max_size=12))
items = st.dictionaries(keys, values, max_size=10)


@SETTINGS
@given(items)
def test_parse_row_raises_nothing_but_mirror_errors(item):
    try:
        row = parse_row(item)
    except MirrorError as exc:
        assert isinstance(exc, RowError)
        assert "\n" not in str(exc)
    else:
        assert is_valid_ecr_repository(row.target_repository)
        assert (row.source is None) != (row.assemble is None)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"id": st.one_of(st.just("r1"), st.text(max_size=20))},
        optional={
            "source": st.one_of(plausible_strings, st.text(max_size=30)),
            "tags": st.one_of(st.lists(st.one_of(plausible_strings, st.text(max_size=12)), max_size=4), scalars),
            "tag_pattern": st.one_of(plausible_strings, st.text(max_size=30)),
            "keep_latest": scalars,
            "platforms": st.one_of(st.lists(st.one_of(plausible_strings, st.text(max_size=12)), max_size=4), scalars),
            "target_repository": st.one_of(plausible_strings, st.text(max_size=30)),
            "arch_tags": scalars,
            "enabled": scalars,
            "assemble": st.one_of(st.lists(st.one_of(plausible_strings, st.text(max_size=30)), max_size=3), scalars),
        },
    )
)
def test_parse_row_on_nearly_valid_rows(item):
    """Rows built from the right attribute names reach the deeper checks."""
    try:
        row = parse_row(item)
    except MirrorError as exc:
        assert isinstance(exc, RowError)
        assert exc.attribute in USER_ATTRIBUTES
    else:
        assert is_valid_ecr_repository(row.target_repository)
        assert all(len(t) <= 128 for t in row.tags)
        if row.is_assemble:
            assert len(row.tags) == 1 and row.tag_pattern is None and row.platforms is None
        else:
            assert row.tags or row.tag_pattern


@SETTINGS
@given(st.text(max_size=300))
def test_ecr_repository_check_agrees_with_aws_pattern(name):
    import re

    aws = re.fullmatch(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", name)
    assert is_valid_ecr_repository(name) == (aws is not None and 2 <= len(name) <= 256)


# ---------------------------------------------------------------- rules on raw items (schedule, stream, CLI)


@pytest.mark.parametrize(("item", "enabled"), [
    ({"id": "a"}, True),
    ({"id": "a", "enabled": True}, True),
    ({"id": "a", "enabled": False}, False),
    ({"id": "a", "enabled": "false"}, True),  # malformed: synced, to be marked invalid
    ({"id": "a", "enabled": None}, True),
    ({"id": {"S": "a"}, "enabled": {"BOOL": False}}, False),  # a stream image (DynamoDB JSON)
    ({"id": {"S": "a"}, "enabled": {"BOOL": True}}, True),
    ({"id": {"S": "a"}, "enabled": {"NULL": True}}, True),
    ({"id": {"S": "a"}, "enabled": {"S": "false"}}, True),
])
def test_a_row_is_enabled_unless_enabled_is_exactly_false(item, enabled):
    assert is_enabled(item) is enabled


def test_user_attributes_of_plain_items_and_stream_images():
    plain = {"id": "a", "source": "golang", "status": {"1": {"state": "in_sync"}}, "row_error": "x", "row_error_at": "t"}
    typed = {"id": {"S": "a"}, "source": {"S": "golang"}, "status": {"M": {}}, "row_error": {"S": "x"}}
    assert user_attributes(plain) == {"id": "a", "source": "golang"}
    assert user_attributes(typed) == {"id": {"S": "a"}, "source": {"S": "golang"}}
    assert user_attributes(None) == {}
