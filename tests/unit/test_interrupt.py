"""RegistryClient.abort(): a request blocked on a silent server ends at once, nothing new starts,
retry waits end. A real socket on loopback that accepts and never answers (no registry needed)."""

from __future__ import annotations

import socket
import threading

import pytest

from ecr_mirror.errors import Interrupted
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import RegistryClient, RetryPolicy
from ecr_mirror.registry.client import default_http_client
from ecr_mirror.registry.interrupt import Interrupter


@pytest.fixture
def silent_server():
    """``(host, accepted)``: a listener whose connections are accepted and never answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            ready.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}", ready
    server.close()
    for conn in accepted:
        conn.close()


def client_with_interrupter() -> RegistryClient:
    interrupter = Interrupter()
    return RegistryClient(default_http_client(2, interrupter=interrupter), interrupter=interrupter,
                          retry=RetryPolicy(attempts=5, base_delay=30.0, max_delay=30.0, max_total=600.0))


def test_abort_wakes_a_request_waiting_for_response_headers(silent_server):
    host, accepted = silent_server
    client = client_with_interrupter()
    outcome: list[BaseException | None] = []

    def head() -> None:
        try:
            client.manifest_head(parse_reference(f"{host}/app:v1"))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    worker = threading.Thread(target=head, daemon=True)
    worker.start()
    assert accepted.wait(10)  # connected; the server never answers (the read timeout is 60 s)
    client.abort()
    worker.join(20)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Interrupted), outcome  # not retried: interruption is final
    with pytest.raises(Interrupted):
        client.manifest_head(parse_reference(f"{host}/app:v1"))  # nothing new starts
    client.http.close()


def test_abort_ends_a_wait_between_retries():
    client = client_with_interrupter()
    calls = []

    def failing() -> None:
        from ecr_mirror.errors import TransportError

        calls.append(1)
        raise TransportError("reset")

    done = threading.Event()
    result: list[BaseException] = []

    def go() -> None:
        try:
            client.retrying(failing, what="copy blob")  # would wait ~15-30 s before the second try
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)
        done.set()

    threading.Thread(target=go, daemon=True).start()
    while not calls:
        pass
    client.abort()
    assert done.wait(20)
    assert calls == [1] and isinstance(result[0], Interrupted)
    client.http.close()
