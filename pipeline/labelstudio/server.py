"""Start, stop and query a local Label Studio server.

Label Studio pins its own numpy, Django, pydantic... so it lives in its own
virtual environment and is run as a subprocess: the executable comes from
``$DAAMSET_LABEL_STUDIO_BIN`` or ``<repo>/.venv-labelstudio/bin/label-studio``
(``make setup-labelstudio`` creates that venv).

Everything the server needs is kept in one data folder:

- ``label_studio.sqlite3`` and media (Label Studio's own files);
- ``daamset-credentials.json`` (mode 0600): the admin e-mail, password and
  API token, generated on the first start. Label Studio creates its admin user
  with that token on the first start of an empty folder, so later starts,
  ``status`` and ``stop`` find the same token here;
- ``daamset-server.json``: pid, URL and document root of the running server;
- ``daamset-server.log``: the server's output.

The server listens on 127.0.0.1 only and runs offline (no update check, no
analytics, no Sentry). Local-files serving is on, with a document root that
must be a parent of the run folders to review (default ``/``: Label Studio
still serves a file only from inside a storage registered to a project the
requesting user may see, and ``review push`` registers just the run folder).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from pipeline.atomic import write_json

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_PORT",
    "ServerError",
    "ServerInfo",
    "find_executable",
    "start",
    "stop",
    "status",
    "shell_exports",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "daamset" / "labelstudio"
DEFAULT_PORT = 8080
HOST = "127.0.0.1"
ADMIN_EMAIL = "daamset@example.com"

CREDENTIALS_FILE = "daamset-credentials.json"
STATE_FILE = "daamset-server.json"
LOG_FILE = "daamset-server.log"


class ServerError(RuntimeError):
    """The local Label Studio could not be started, found or stopped."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a local server is and how to reach it.

    ``api_key`` is a secret: it is never logged. ``started`` tells whether this
    call started the server (False: it was already running).
    """

    url: str
    api_key: str
    pid: int
    data_dir: Path
    log_file: Path
    document_root: Path
    started: bool = False
    seconds: float = 0.0

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"ServerInfo(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r}, started={self.started})"


def find_executable() -> Path:
    """The ``label-studio`` executable: ``$DAAMSET_LABEL_STUDIO_BIN`` or the repo's own venv."""
    configured = os.environ.get("DAAMSET_LABEL_STUDIO_BIN")
    candidates = [Path(configured)] if configured else [REPO_ROOT / ".venv-labelstudio" / "bin" / "label-studio"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = f"DAAMSET_LABEL_STUDIO_BIN={configured}" if configured else str(candidates[0])
    raise ServerError(
        f"Label Studio executable not found at {where}. Install it in its own venv with "
        "`make setup-labelstudio` (python3 -m venv .venv-labelstudio && "
        ".venv-labelstudio/bin/pip install label-studio==1.23.2), or point DAAMSET_LABEL_STUDIO_BIN at it."
    )


def _credentials(data_dir: Path) -> dict[str, str]:
    """Read the folder's credentials, creating them (0600) on first use."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        creds = json.loads(path.read_text(encoding="utf-8"))
        if not {"username", "password", "token"} <= set(creds):
            raise ServerError(f"{path} is incomplete; remove the data folder {data_dir} to start afresh")
        return creds
    creds = {
        "username": ADMIN_EMAIL,
        "password": secrets.token_urlsafe(18),
        # Django REST framework tokens are at most 40 characters
        "token": secrets.token_hex(20),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(creds, f)
    os.replace(tmp, path)
    return creds


def _read_state(data_dir: Path) -> dict | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _is_our_process(pid: int) -> bool:
    """True when ``pid`` is alive and is a Label Studio process (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return b"label-studio" in cmdline or b"label_studio" in cmdline


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
        return response.status_code == 200 and response.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_token(url: str, token: str) -> None:
    response = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=10)
    if response.status_code == 401:
        raise ServerError(
            f"Label Studio at {url} rejects the token stored in its data folder: the folder was "
            "first started without daamset (or with another token). Use a fresh --data-dir."
        )
    response.raise_for_status()


def server_env(data_dir: Path, creds: dict[str, str], document_root: Path) -> dict[str, str]:
    """The environment a headless, offline Label Studio needs (see ENVIRONMENT.md)."""
    env = dict(os.environ)
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": creds["username"],
            "LABEL_STUDIO_PASSWORD": creds["password"],
            "LABEL_STUDIO_USER_TOKEN": creds["token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        }
    )
    return env


def _info(data_dir: Path, state: dict, creds: dict[str, str], *, started: bool, seconds: float = 0.0) -> ServerInfo:
    return ServerInfo(
        url=state["url"],
        api_key=creds["token"],
        pid=int(state["pid"]),
        data_dir=data_dir,
        log_file=data_dir / LOG_FILE,
        document_root=Path(state.get("document_root", "/")),
        started=started,
        seconds=seconds,
    )


def status(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> ServerInfo | None:
    """The running server of ``data_dir`` (healthy, started by daamset), or None."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if not state or not _is_our_process(int(state["pid"])) or not _healthy(state["url"]):
        return None
    return _info(data_dir, state, _credentials(data_dir), started=False)


def start(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    port: int = DEFAULT_PORT,
    document_root: str | os.PathLike[str] = "/",
    timeout: float = 300.0,
) -> ServerInfo:
    """Start Label Studio on 127.0.0.1:``port`` with its data in ``data_dir``; wait until healthy.

    Idempotent: when this folder's server already runs, its info is returned
    (``started=False``) whatever ``port`` says. The first start of an empty
    folder runs the database migrations (25-45 s here); later starts take ~5 s.
    """
    data_dir = Path(data_dir).resolve()
    document_root = Path(document_root).resolve()
    if not document_root.is_dir():
        raise ServerError(f"document root {document_root} is not a folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    creds = _credentials(data_dir)

    state = _read_state(data_dir)
    if state and _is_our_process(int(state["pid"])):
        if _wait_healthy(state["url"], int(state["pid"]), data_dir / LOG_FILE, timeout):
            log.info("Label Studio already running at %s (pid %s)", state["url"], state["pid"])
            return _info(data_dir, state, creds, started=False)
        raise ServerError(
            f"the Label Studio of {data_dir} (pid {state['pid']}) runs but is not healthy at {state['url']}; "
            f"see {data_dir / LOG_FILE}, or stop it with `daamset labelstudio stop --data-dir {data_dir}`"
        )
    if state:
        (data_dir / STATE_FILE).unlink(missing_ok=True)  # stale: the process is gone

    if _port_in_use(port):
        raise ServerError(f"port {port} on {HOST} is already in use by another program; choose another with --port")

    executable = find_executable()
    log_file = data_dir / LOG_FILE
    url = f"http://{HOST}:{port}"
    command = [
        str(executable),
        "start",
        "--no-browser",
        "--internal-host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    t0 = time.monotonic()
    with log_file.open("ab") as log_handle:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=server_env(data_dir, creds, document_root),
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and its children
        )
    state = {
        "pid": process.pid,
        "url": url,
        "port": port,
        "document_root": str(document_root),
        "started_at": time.time(),
    }
    write_json(data_dir / STATE_FILE, state)
    log.info("starting Label Studio at %s (data in %s, log %s)", url, data_dir, log_file)
    if not _wait_healthy(url, process.pid, log_file, timeout):
        _terminate(process.pid)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        raise ServerError(f"Label Studio did not become healthy within {timeout:.0f} s; see {log_file}")
    _check_token(url, creds["token"])
    seconds = time.monotonic() - t0
    log.info("Label Studio is up at %s after %.1f s", url, seconds)
    return _info(data_dir, state, creds, started=True, seconds=seconds)


def _wait_healthy(url: str, pid: int, log_file: Path, timeout: float) -> bool:
    """Poll /health until UP; raise with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while time.monotonic() < deadline:
        if _healthy(url):
            return True
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by an earlier command)
            finished = 0 if _is_our_process(pid) else pid
        if finished:
            raise ServerError(f"Label Studio exited during start-up; last lines of {log_file}:\n{_log_tail(log_file)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    return False


def _terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:
            if not _is_our_process(pid):
                return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> bool:
    """Stop the server of ``data_dir``; False when none was running."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if not state:
        return False
    pid = int(state["pid"])
    running = _is_our_process(pid)
    if running:
        _terminate(pid)
        log.info("stopped Label Studio (pid %s)", pid)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return running


def shell_exports(info: ServerInfo) -> str:
    """``export`` lines for ``eval``: the URL, the key, and the document root push should use."""
    import shlex

    return "\n".join(
        [
            f"export LABEL_STUDIO_URL={shlex.quote(info.url)}",
            f"export LABEL_STUDIO_API_KEY={shlex.quote(info.api_key)}",
            f"export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={shlex.quote(str(info.document_root))}",
        ]
    )


def as_dict(info: ServerInfo) -> dict:
    """A JSON-ready view without the key."""
    out = asdict(info)
    for key in ("api_key", "started", "seconds"):  # the secret, and what only start() knows
        out.pop(key)
    return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
