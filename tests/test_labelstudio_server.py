"""The local server's life cycle through the CLI: start, idempotent start, status, stop, restart."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from pipeline.cli import main
from pipeline.labelstudio import server
from pipeline.labelstudio.client import connect
from tests.labelstudio_fixtures import free_port


def _exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            out[name] = shlex.split(value)[0]
    return out


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).json().get("status") == "UP"
    except httpx.HTTPError:
        return False


def test_start_status_stop_restart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, port = tmp_path / "ls-data", free_port()
    args = ["--data-dir", str(data_dir)]
    try:
        t0 = time.monotonic()
        assert main(["labelstudio", "start", *args, "--port", str(port)]) == 0
        first_start = time.monotonic() - t0
        out = capsys.readouterr()
        env = _exports(out.out)
        assert env["LABEL_STUDIO_URL"] == f"http://127.0.0.1:{port}"
        key = env["LABEL_STUDIO_API_KEY"]
        assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == "/"
        assert connect(env["LABEL_STUDIO_URL"], key).check()["email"] == server.ADMIN_EMAIL

        # the token lives only in the credentials file, readable by its owner alone
        creds = data_dir / server.CREDENTIALS_FILE
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and key in creds.read_text()
        assert key not in (data_dir / server.LOG_FILE).read_text(errors="replace")
        assert key not in (data_dir / server.STATE_FILE).read_text()

        # starting again finds the running server
        t0 = time.monotonic()
        assert main(["labelstudio", "start", *args, "--port", str(free_port())]) == 0
        assert time.monotonic() - t0 < 5
        again = capsys.readouterr()
        assert _exports(again.out) == env and "already running" in again.err

        assert main(["labelstudio", "status", *args]) == 0
        status_out = capsys.readouterr().out
        assert f'"url": "http://127.0.0.1:{port}"' in status_out and key not in status_out

        pid = server.status(data_dir).pid
        assert main(["labelstudio", "stop", *args]) == 0
        assert not _healthy(env["LABEL_STUDIO_URL"])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert main(["labelstudio", "status", *args]) == 1
        capsys.readouterr()

        # a restart keeps the data and the token
        t0 = time.monotonic()
        assert main(["labelstudio", "start", *args, "--port", str(port)]) == 0
        restart = time.monotonic() - t0
        assert _exports(capsys.readouterr().out)["LABEL_STUDIO_API_KEY"] == key
        assert connect(env["LABEL_STUDIO_URL"], key).check()["email"] == server.ADMIN_EMAIL
        assert restart < first_start
    finally:
        server.stop(data_dir)


def test_missing_executable_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAAMSET_LABEL_STUDIO_BIN", str(tmp_path / "nowhere" / "label-studio"))
    with pytest.raises(server.ServerError, match=r"make setup-labelstudio.*label-studio==1\.23\.2"):
        server.start(tmp_path / "data", port=free_port())
    assert server.status(tmp_path / "data") is None
    assert server.stop(tmp_path / "data") is False


def test_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(server.ServerError, match=rf"port {port} .* already in use"):
            server.start(tmp_path / "data", port=port)
