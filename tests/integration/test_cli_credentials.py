"""Credentials and trust the way Docker does them (issue 16): ``credsStore`` and ``credHelpers`` run
``docker-credential-<name> get``; a private registry signed by its own CA is trusted with ``--ca-file``
or ``SSL_CERT_FILE``. Real processes: the helper is a script the test writes, the registry is a real
``docker-registry`` serving TLS with a certificate from a CA made here.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import images as im
from tests.support.tls import PrivateCA, non_loopback_address

EXE = str(Path(sys.executable).parent / "ecr-mirror")
NOT_FOUND = "credentials not found in native keychain"

HELPER = '''#!{python}
import json, sys
log_path, store_path = {log!r}, {store!r}
server = sys.stdin.read()
with open(log_path, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": server}}) + "\\n")
store = json.load(open(store_path))
if store.get("fail"):
    print(store["fail"], file=sys.stderr)
    sys.exit(3)
if sys.argv[1:] != ["get"]:
    sys.exit(2)
entry = store.get(server)
if entry is None:
    print("{not_found}")
    sys.exit(1)
print(json.dumps({{"ServerURL": server, "Username": entry[0], "Secret": entry[1]}}))
'''


class Helper:
    """``docker-credential-<name>`` in ``bin``: answers from :meth:`store`, logs every call."""

    def __init__(self, bin_dir: Path, name: str) -> None:
        self.log = bin_dir / f"{name}.log"
        self.store_path = bin_dir / f"{name}.json"
        self.store({})
        path = bin_dir / f"docker-credential-{name}"
        path.write_text(HELPER.format(python=sys.executable, log=str(self.log), store=str(self.store_path), not_found=NOT_FOUND))
        path.chmod(0o755)

    def store(self, entries: dict) -> None:
        self.store_path.write_text(json.dumps(entries))

    @property
    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


def test_creds_store_and_cred_helpers_run_docker_credential_helpers(auth_registry, registry, tmp_path):
    user, password = auth_registry.credentials
    image = im.build_image("linux/amd64", seed=71)
    im.push_image(auth_registry, "app", image, "v1", auth=auth_registry.auth)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store, per_host = Helper(bin_dir, "teststore"), Helper(bin_dir, "perhost")
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    env = {"DOCKER_CONFIG": str(config_dir), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def config(doc: dict) -> None:
        (config_dir / "config.json").write_text(json.dumps(doc))

    # credsStore: every registry's credentials come from the store's helper
    config({"auths": {auth_registry.host: {}}, "credsStore": "teststore"})
    store.store({auth_registry.host: [user, password]})
    copied = run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v1", env=env)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.strip() == image.digest
    assert {"argv": ["get"], "stdin": auth_registry.host} in store.calls  # the protocol: `get`, server URL on stdin
    assert password not in copied.stdout + copied.stderr

    # credHelpers: a per-registry helper wins over credsStore
    store.store({})
    per_host.store({auth_registry.host: [user, password]})
    config({"credsStore": "teststore", "credHelpers": {auth_registry.host: "perhost"}})
    assert run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v2", env=env).returncode == 0
    assert per_host.calls == [{"argv": ["get"], "stdin": auth_registry.host}]

    # "credentials not found": anonymous, as Docker does; the registry then refuses
    config({"credsStore": "teststore"})
    err = one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v3", env=env))
    assert "requires credentials and none are configured" in err

    # a helper that fails, or is not installed: one line naming it
    store.store({"fail": "keychain is locked"})
    err = one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v3", env=env))
    assert "docker-credential-teststore get" in err and "keychain is locked" in err
    config({"credsStore": "desktop"})
    err = one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v3", env={**env, "PATH": str(bin_dir)}))
    assert "docker-credential-desktop" in err and "not on PATH" in err
    config({"credsStore": "../../bin/sh"})
    assert "not a plain program name" in one_line_error(run("copy", f"{auth_registry.host}/app:v1", f"{registry.host}/app:v3", env=env))


def test_private_registry_with_its_own_ca(registry_factory, registry, tmp_path):
    address = non_loopback_address()
    ca = PrivateCA.create(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "tls", ip=address)
    private = registry_factory(tls=(cert, key), address=address)
    assert private.url.startswith("https://")
    index = im.build_index([im.build_image("linux/amd64", seed=72), im.build_image("linux/arm64", seed=72)])
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca.cert_path)), timeout=60) as http:
        im.push_index(private, "team/app", index, "v1", client=http)
    source, env = f"{private.host}/team/app:v1", {"DOCKER_CONFIG": str(tmp_path / "no-docker")}

    untrusted = one_line_error(run("copy", source, f"{registry.host}/app:v1", env=env))
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted and "--ca-file" in untrusted

    trusted = run("copy", "--ca-file", str(ca.cert_path), source, f"{registry.host}/app:v1", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == index.digest == im.head_manifest(registry, "app", "v1")

    by_env = run("digest", source, env={**env, "SSL_CERT_FILE": str(ca.cert_path)})
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.strip() == index.digest

    missing = one_line_error(run("digest", "--ca-file", str(tmp_path / "missing.pem"), source, env=env))
    assert f"--ca-file {tmp_path / 'missing.pem'}: no such file" in missing
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    assert "not a PEM file" in one_line_error(run("digest", "--ca-file", str(not_pem), source, env=env))
