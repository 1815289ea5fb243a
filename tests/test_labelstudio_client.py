"""The client's retry and error policy: a tiny flaky HTTP server, a closed port, and the real server."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.labelstudio.client import (
    AuthenticationFailed,
    LabelStudioError,
    ServerUnreachable,
    connect,
)
from tests.labelstudio_fixtures import free_port

USER = {"id": 7, "email": "reviewer@example.com", "username": "reviewer"}


class Flaky:
    """A loopback HTTP server answering ``plan`` in order (then 200s): status codes or "drop"."""

    def __init__(self, plan: list[int | str]) -> None:
        self.plan = list(plan)
        self.hits = 0
        self.auth_headers: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                outer.hits += 1
                outer.auth_headers.append(self.headers.get("Authorization", ""))
                step = outer.plan.pop(0) if outer.plan else 200
                if step == "drop":  # close without answering: a transport error
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = json.dumps(USER if step == 200 else {"detail": f"status {step}"}).encode()
                self.send_response(int(step))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Flaky:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sleeps() -> Iterator[list[float]]:
    yield []


def test_transient_failures_are_retried_with_exponential_backoff(sleeps: list[float]) -> None:
    with Flaky([503, "drop", 502]) as flaky:
        conn = connect(flaky.url, "sekrit-key", retries=4, backoff=0.25, sleep=sleeps.append)
        assert conn.check() == {"id": 7, "email": "reviewer@example.com"}
    assert flaky.hits == 4  # three failures, then the answer
    assert sleeps == [0.25, 0.5, 1.0]
    assert set(flaky.auth_headers) == {"Token sekrit-key"}


def test_persistent_5xx_gives_up_after_the_retries(sleeps: list[float]) -> None:
    with Flaky([500] * 10) as flaky:
        conn = connect(flaky.url, "k", retries=2, backoff=0.1, sleep=sleeps.append)
        with pytest.raises(ServerUnreachable, match=r"HTTP 500 after 3 attempts"):
            conn.check()
    assert flaky.hits == 3 and sleeps == [0.1, 0.2]


def test_401_is_not_retried_and_says_so(sleeps: list[float]) -> None:
    with Flaky([401]) as flaky:
        conn = connect(flaky.url, "wrong-key-123", retries=3, backoff=0.1, sleep=sleeps.append)
        with pytest.raises(AuthenticationFailed, match="rejected the API key") as err:
            conn.check()
    assert flaky.hits == 1 and sleeps == []
    assert "wrong-key-123" not in str(err.value)


def test_server_down_names_the_url_and_the_fix(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    conn = connect(url, "k", retries=2, backoff=0.05, sleep=sleeps.append)
    with pytest.raises(ServerUnreachable) as err:
        conn.check()
    message = str(err.value)
    assert url in message and "not reachable" in message and "daamset labelstudio start" in message
    assert sleeps == [0.05, 0.1]


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_URL"):
        connect()
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        connect("http://127.0.0.1:1")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-env")
    assert connect().url == "http://127.0.0.1:9"


def test_real_server_accepts_the_key_and_rejects_a_wrong_one(
    labelstudio: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = connect(labelstudio.url, labelstudio.api_key).check()
    assert user["id"] > 0 and "@" in user["email"]
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        connect(labelstudio.url, "0" * 40, retries=0).check()
    assert labelstudio.api_key not in caplog.text
