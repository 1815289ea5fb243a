"""A connection to a Label Studio server: retries on transient failures, errors that name their cause.

The URL and API key come from arguments or from ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY``. The key is only ever sent in the Authorization
header: it is not logged, and no error message repeats it.

``Connection.call`` wraps one SDK call. Transient failures (connection
refused or reset, timeouts, HTTP 5xx and 429) are retried with exponential
backoff; the SDK's own retry loop is switched off so that backoff and attempt
counts are ours to state. A failure that persists, and the permanent ones
(401, 403, 404), become a ``LabelStudioError`` subclass naming the server,
the operation and the cause.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

__all__ = [
    "LabelStudioError",
    "ServerUnreachable",
    "AuthenticationFailed",
    "NotFound",
    "ProjectNotFound",
    "RequestFailed",
    "Connection",
    "connect",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class LabelStudioError(RuntimeError):
    """A Label Studio operation failed; the message names the server and the cause."""


class ServerUnreachable(LabelStudioError):
    """No answer from the server (down, wrong URL, or failing after every retry)."""


class AuthenticationFailed(LabelStudioError):
    """The server rejected the API key (401) or the user may not do this (403)."""


class NotFound(LabelStudioError):
    """The server has no such object (404)."""


class ProjectNotFound(NotFound):
    """The project recorded for a run no longer exists on the server."""


class RequestFailed(LabelStudioError):
    """The server refused a request for another reason (4xx with a message)."""


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "message", "error"):
            if key in body:
                return str(body[key])
    text = str(body)
    return text if len(text) < 500 else text[:500] + "..."


class Connection:
    """An SDK client plus the retry and error policy; ``sdk`` is the raw ``LabelStudio``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._api_key = api_key
        self.sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r})"

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (an SDK call), retrying transient failures.

        ``what`` names the operation in errors ("create project", ...). Waits
        ``backoff * 2**attempt`` seconds (capped at ``max_backoff``) between
        attempts, ``retries`` retries at most.
        """
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except ApiError as err:
                status = err.status_code
                if status in TRANSIENT_STATUS and attempt < self.retries:
                    cause = f"HTTP {status}"
                elif status in TRANSIENT_STATUS:
                    raise ServerUnreachable(
                        f"Label Studio at {self.url}: {what} failed with HTTP {status} after "
                        f"{attempt + 1} attempts: {_detail(err.body)}"
                    ) from None
                else:
                    raise self._permanent(what, status, err.body) from None
            except httpx.TransportError as err:
                if attempt >= self.retries:
                    raise ServerUnreachable(
                        f"Label Studio at {self.url} is not reachable ({type(err).__name__}: {err}) "
                        f"after {attempt + 1} attempts while trying to {what}. Is the server running? "
                        "Start one with `daamset labelstudio start` and export LABEL_STUDIO_URL."
                    ) from None
                cause = type(err).__name__
            delay = min(self.backoff * 2**attempt, self.max_backoff)
            log.warning("Label Studio %s: %s; retrying in %.1f s", what, cause, delay)
            self._sleep(delay)
            attempt += 1

    def _permanent(self, what: str, status: int | None, body: Any) -> LabelStudioError:
        if status == 401:
            return AuthenticationFailed(
                f"Label Studio at {self.url} rejected the API key (HTTP 401) while trying to {what}: "
                "check LABEL_STUDIO_API_KEY (the legacy token from Account & Settings, or the one "
                "`daamset labelstudio start` printed)."
            )
        if status == 403:
            return AuthenticationFailed(
                f"Label Studio at {self.url} refused to {what} (HTTP 403): {_detail(body)}. "
                "Legacy API tokens may be disabled on this server (Organization settings)."
            )
        if status == 404:
            return NotFound(f"Label Studio at {self.url}: {what}: not found (HTTP 404)")
        return RequestFailed(f"Label Studio at {self.url}: {what} failed (HTTP {status}): {_detail(body)}")

    def check(self) -> dict[str, Any]:
        """Verify the server answers and accepts the key; returns the current user (id, email)."""
        user = self.call("check the connection", self.sdk.users.whoami)
        return {"id": user.id, "email": getattr(user, "email", None) or getattr(user, "username", "")}

    def get_bytes(self, path: str, what: str) -> bytes:
        """GET a server path with the key (e.g. a served image), with the same retry policy."""

        def fetch() -> bytes:
            # the SDK's own HTTP client: it sets the auth header for legacy tokens and for
            # personal access tokens (JWT, refreshed as needed) alike
            response = self.sdk._client_wrapper.httpx_client.request(path, method="GET")
            if response.status_code >= 400:
                raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=response.text)
            return response.content

        return self.call(what, fetch)


def connect(url: str | None = None, api_key: str | None = None, **options: Any) -> Connection:
    """A ``Connection`` from arguments, else ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.

    Does not contact the server; ``Connection.check()`` does.
    """
    url = url or os.environ.get("LABEL_STUDIO_URL")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not url:
        raise LabelStudioError(
            'no Label Studio URL: set LABEL_STUDIO_URL (e.g. `eval "$(daamset labelstudio start)"`) or pass --url'
        )
    if not api_key:
        raise LabelStudioError(
            "no Label Studio API key: set LABEL_STUDIO_API_KEY (printed by `daamset labelstudio start`, "
            "or the legacy token under Account & Settings of your server)"
        )
    if not url.startswith(("http://", "https://")):
        raise LabelStudioError(f"LABEL_STUDIO_URL must start with http:// or https://, got {url!r}")
    try:
        return Connection(url, api_key, **options)
    except ApiError as err:  # the SDK checks a JWT key's expiry when it is built
        raise AuthenticationFailed(f"Label Studio API key for {url} is not usable: {_detail(err.body)}") from None
