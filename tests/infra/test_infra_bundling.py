"""Local bundling without Docker: pip for the Lambda platform, the package copied next to it, cached."""

from __future__ import annotations

import pytest

from infra import bundling
from infra.bundling import LocalPipBundling, pip_arguments, python_version, source_hash

# one xdist worker for all infra tests: the session synthesis runs once
pytestmark = pytest.mark.xdist_group("infra")


def test_pip_installs_binary_wheels_for_the_lambda_platform_and_runtime(tmp_path):
    args = pip_arguments(tmp_path / "out", tmp_path / "requirements.txt")
    joined = " ".join(args)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--implementation cp" in joined
    assert f"--python-version {python_version(bundling.RUNTIME)}" in joined
    assert "--only-binary=:all:" in args
    assert python_version(bundling.RUNTIME) == bundling.RUNTIME.name.removeprefix("python")
    assert bundling.ARCHITECTURE.name == "arm64"


def test_source_hash_is_stable_and_follows_the_sources(tmp_path):
    assert source_hash() == source_hash()
    source = make_source(tmp_path)
    before = source_hash(source_dir=source)
    (source / "ecr_mirror" / "__pycache__").mkdir()
    (source / "ecr_mirror" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"litter")
    assert source_hash(source_dir=source) == before, "build litter does not change the asset"
    (source / "ecr_mirror" / "handlers.py").write_text("def handler(event, context):\n    return 2\n")
    assert source_hash(source_dir=source) != before
    changed = source_hash(source_dir=source)
    (source / "requirements.txt").write_text("# nothing, still\n\n")
    assert source_hash(source_dir=source) != changed


def make_source(root):
    source = root / "lambda"
    (source / "ecr_mirror").mkdir(parents=True)
    (source / "requirements.txt").write_text("# nothing\n")
    (source / "ecr_mirror" / "__init__.py").write_text("")
    (source / "ecr_mirror" / "handlers.py").write_text("def handler(event, context):\n    return 1\n")
    return source


def test_try_bundle_installs_once_then_reuses_the_cache(tmp_path, monkeypatch):
    source = make_source(tmp_path)
    bundler = LocalPipBundling(source_dir=source, cache_root=tmp_path / "cache")
    first = tmp_path / "out1"
    assert bundler.try_bundle(str(first)) is True  # a real pip run (no requirements: nothing to download)
    assert (first / "ecr_mirror" / "handlers.py").read_text().endswith("return 1\n")
    assert not (first / ".complete").exists()
    assert (tmp_path / "cache" / bundler.cache_key() / ".complete").is_file()

    def no_pip(*_args, **_kwargs):
        raise AssertionError("pip ran again although the cache holds this requirements.txt")

    monkeypatch.setattr(LocalPipBundling, "_pip_install", no_pip)
    (source / "ecr_mirror" / "handlers.py").write_text("def handler(event, context):\n    return 2\n")
    second = tmp_path / "out2"
    assert bundler.try_bundle(str(second)) is True
    assert (second / "ecr_mirror" / "handlers.py").read_text().endswith("return 2\n"), "the package is fresh"


def test_a_failing_pip_is_an_error_not_a_silent_docker_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(bundling, "_pip_available", lambda: True)
    source = make_source(tmp_path)
    (source / "requirements.txt").write_text("--definitely-not-a-pip-option\n")
    bundler = LocalPipBundling(source_dir=source, cache_root=tmp_path / "cache")
    with pytest.raises(RuntimeError, match="pip exit"):
        bundler.try_bundle(str(tmp_path / "out"))
    assert not any((tmp_path / "cache").glob("*/.complete")), "nothing half-built is cached"


def test_without_pip_docker_is_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(bundling, "_pip_available", lambda: False)
    bundler = LocalPipBundling(source_dir=make_source(tmp_path), cache_root=tmp_path / "cache")
    assert bundler.try_bundle(str(tmp_path / "out")) is False


def test_ecr_mirror_is_a_construct_for_other_apps(tmp_path):
    """``EcrMirror(scope, id, **props)`` inside any stack (built, not synthesized: the session did that)."""
    import aws_cdk as cdk

    from infra import EcrMirror, EcrMirrorProps

    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "SomeoneElsesStack")
    mirror = EcrMirror(stack, "Mirror", repository_prefix="platform/mirror", max_concurrency=2)
    assert mirror.props == EcrMirrorProps(repository_prefix="platform/mirror", max_concurrency=2)
    assert {c.node.id for c in mirror.node.children} >= {"MirrorTable", "Service", "Monitoring"}
    with pytest.raises(TypeError):
        EcrMirror(stack, "Other", props=EcrMirrorProps(), max_concurrency=2)
    with pytest.raises(TypeError):
        EcrMirror(stack, "Typo", repository_prefx="x")
