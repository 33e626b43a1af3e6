"""A small JSON-over-HTTP client for the remote backend (standard library only).

Why not a library: the game needs four things, all in ``http.client``: JSON calls with a timeout,
retries of the calls that are safe to repeat, a server-sent-event stream read line by line, and
aborting that stream by closing its connection (how Escape stops a reply on the server). Every
failure becomes a :class:`BackendError` whose message is one line naming the server, never the
API key.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from game.backends.base import BackendError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# A call that answers at once (tokenize, props); a reply's stream waits longer between events
# (a big prompt read on a busy server sends progress, but a model may be loading).
CALL_TIMEOUT_S = 30.0
STREAM_TIMEOUT_S = 300.0
RETRIES = 2
RETRY_PAUSE_S = 0.3
# An error body is read only this far: a message, not a page.
MAX_ERROR_BYTES = 4096


class HttpStatusError(BackendError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _error_text(body: bytes) -> str:
    """The server's own message from an error body (llama-server and OpenAI style), one line."""
    text = body[:MAX_ERROR_BYTES].decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:200] if text else ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if error is None and isinstance(data, dict):
        error = data.get("message") or data.get("detail")
    return str(error or text).splitlines()[0][:200] if (error or text) else ""


class HttpClient:
    """JSON calls to one server.

    Args:
        base_url: ``http://host:port`` (a path prefix such as ``/v1`` is kept and prepended).
        api_key: Sent as ``Authorization: Bearer``; kept out of every message and log line.
    """

    def __init__(self, base_url: str, api_key: str | None = None):
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"not a server URL: {base_url!r} (expected http://host:port)")
        try:
            port = parts.port
        except ValueError:
            raise BackendError(f"not a server URL: {base_url!r} (bad port)") from None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.url = f"{parts.scheme}://{parts.netloc}{self.prefix}"
        self._api_key = api_key

    def __repr__(self) -> str:  # never the key
        return f"HttpClient({self.url!r})"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _open(
        self, method: str, path: str, payload: Any, timeout: float
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request; return the connection and a response with a 2xx status."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        connection = self._connection(CONNECT_TIMEOUT_S)
        where = f"{self.url}{path}"
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            connection.request(method, self.prefix + path, body=body, headers=self._headers(body))
            response = connection.getresponse()
        except ConnectionRefusedError:
            connection.close()
            raise BackendError(f"no server answers at {self.url} (connection refused)") from None
        except socket.gaierror:
            connection.close()
            raise BackendError(f"cannot find the server {self.host} ({self.url})") from None
        except TimeoutError:
            connection.close()
            raise BackendError(f"the server at {self.url} did not answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            reason = str(exc) or type(exc).__name__
            raise BackendError(f"the server at {self.url} failed: {reason}") from None
        if response.status >= 300:
            detail = _error_text(response.read(MAX_ERROR_BYTES))
            connection.close()
            raise HttpStatusError(
                self._status_message(response.status, where, detail), response.status
            )
        return connection, response

    def _status_message(self, status: int, where: str, detail: str) -> str:
        if status in (401, 403):
            hint = "the API key was refused" if self._api_key else "the server wants an API key"
            return f"{where}: HTTP {status}: {hint} (--api-key or METHARME_API_KEY)"
        if status == 404:
            return f"{where}: HTTP 404: not found (is this the right URL and server kind?)"
        return f"{where}: HTTP {status}" + (f": {detail}" if detail else "")

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        retries: int = RETRIES,
        timeout: float = CALL_TIMEOUT_S,
    ) -> Any:
        """One JSON call; calls that are safe to repeat pass ``retries`` and are retried on
        connection failures and 502/503 answers (a server still loading its model).

        Raises:
            BackendError: one line naming the server and what went wrong.
        """
        attempt = 0
        while True:
            try:
                connection, response = self._open(method, path, payload, timeout)
                try:
                    raw = response.read()
                finally:
                    connection.close()
            except HttpStatusError as exc:
                if exc.status not in (502, 503) or attempt >= retries:
                    raise
                problem: BackendError = exc
            except BackendError as exc:
                if attempt >= retries:
                    raise
                problem = exc
            except (OSError, http.client.HTTPException) as exc:
                problem = BackendError(f"the server at {self.url} broke off: {exc}")
                if attempt >= retries:
                    raise problem from None
            else:
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    raise BackendError(
                        f"{self.url}{path}: the answer is not JSON (is this the right URL?)"
                    ) from None
            attempt += 1
            log.info("retrying %s %s (%d of %d): %s", method, path, attempt, retries, problem)
            time.sleep(RETRY_PAUSE_S * attempt)

    def stream(self, path: str, payload: Any, *, timeout: float = STREAM_TIMEOUT_S) -> EventStream:
        """POST ``payload`` and read the answer as server-sent events (never retried: a reply is
        not safe to ask for twice). Close the stream to abort the request on the server."""
        connection, response = self._open("POST", path, payload, timeout)
        return EventStream(connection, response, f"{self.url}{path}")


class EventStream:
    """The ``data:`` events of a streamed answer, as parsed JSON; ``[DONE]`` ends it."""

    def __init__(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, where: str
    ):
        self._connection = connection
        self._response = response
        self._where = where

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            while True:
                line = self._response.readline()
                if not line:
                    return
                line = line.strip()
                if not line.startswith(b"data:"):
                    # Comments, event names and the blank lines between events.
                    if line.startswith(b"error:"):
                        raise BackendError(f"{self._where}: {_error_text(line[6:])}")
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    raise BackendError(f"{self._where}: the server sent a broken event") from None
                if isinstance(event, dict) and "error" in event:
                    raise BackendError(f"{self._where}: {_error_text(data)}")
                yield event
        except TimeoutError:
            raise BackendError(f"{self._where}: the server stopped answering (timed out)") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            raise BackendError(
                f"{self._where}: the server broke off the reply ({reason})"
            ) from None

    def close(self) -> None:
        """Drop the connection: llama-server and vLLM stop the request when the client goes."""
        self._connection.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
