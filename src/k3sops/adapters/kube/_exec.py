"""Commands in pods over the exec subresource's WebSocket (``v5.channel.k8s.io``, ``v4``).

httpx2 does the upgrade (TLS, credentials, the 101 answer); the frames are read and written
here, in the caller's thread: an exec stream is one binary message per write of the remote
process, each starting with its channel (0 stdin, 1 stdout, 2 stderr, 3 the final Status),
and a backup streams gigabytes through it, so there is no background thread, queue or
per-message event object between the socket and the reader. v5 adds the message ``255 0``
that closes the remote stdin (end of input); with v4 the caller ends input its own way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import struct
import threading
from typing import Any

import httpx2

from k3sops.adapters.kube._errors import Call, status_error, transport_error
from k3sops.adapters.kube._paths import api_path
from k3sops.errors import AdapterError, Timeout, Unreachable

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
_CLOSE = 255
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's key suffix
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_READ = 256 * 1024
_STDERR_KEPT = 8000
_EXIT_STATUS = re.compile(r"exit status (\d+)\s*$")


def _mask(payload: bytes, key: bytes) -> bytes:
    # One big-integer XOR: the key repeated over the payload, in C, not a loop per byte.
    n = len(payload)
    if not n:
        return payload
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455: a client masks every frame)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class ExecSession:
    """A command running in a pod: its stdout as a file, its stdin as a writer, its exit code.

    Reading stdout also collects stderr (the last 8,000 bytes) and the final Status; the
    session ends when the server sends the Status and closes the connection.
    """

    def __init__(self, stream: Any, call: Call, response: httpx2.Response,
                 closer: contextlib.ExitStack, subprotocol: str) -> None:
        self._stream = stream
        self._call = call
        self._response = response
        self._closer = closer
        self.subprotocol = subprotocol
        self._buf = b""
        self._pos = 0
        self._pending = memoryview(b"")
        self._message_channel: int | None = None
        self._write_lock = threading.Lock()
        self._stderr = bytearray()
        self.status: dict[str, Any] | None = None
        self._ended = False
        self.read_timeout: float | None = call.timeout
        self.stdout = io.BufferedReader(_Stdout(self), buffer_size=_READ)
        self.stdin = io.BufferedWriter(_Stdin(self), buffer_size=_READ)

    @classmethod
    def open(cls, http: httpx2.Client, server: str, call: Call, namespace: str, pod: str,
             command: list[str], *, container: str | None = None,
             stdin: bool = False) -> ExecSession:
        """Upgrade ``pods/POD/exec`` to a WebSocket running ``command``.

        Raises:
            Unauthorized: no ``create`` on ``pods/exec`` there (the 403 names it).
            NotFound: no such pod (or container).
            Unreachable, Timeout, AdapterError: the upgrade failed otherwise.
        """
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("command", c) for c in command]
        params += [("stdout", "true"), ("stderr", "true")]
        if stdin:
            params.append(("stdin", "true"))
        if container:
            params.append(("container", container))
        key = base64.b64encode(os.urandom(16)).decode()
        headers = {"Connection": "Upgrade", "Upgrade": "websocket",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key,
                   "Sec-WebSocket-Protocol": ", ".join(PROTOCOLS)}
        closer = contextlib.ExitStack()
        try:
            resp = closer.enter_context(http.stream(
                "GET", f"{server}{api_path('v1', 'pods', namespace, pod, 'exec')}",
                params=params, headers=headers))
            if resp.status_code != 101:
                raise status_error(resp.status_code, resp.read(), call)
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324  # RFC 6455 names SHA-1
            proto = resp.headers.get("sec-websocket-protocol", "")
            if resp.headers.get("sec-websocket-accept") != accept or proto not in PROTOCOLS:
                raise AdapterError(f"{call.what} on {server}: the WebSocket upgrade was not "
                                   f"answered as RFC 6455 and the exec protocol require "
                                   f"(subprotocol {proto!r})",
                                   hint="is a proxy between k3sops and the API server "
                                        "rewriting the upgrade?")
        except httpx2.TransportError as e:
            closer.close()
            raise transport_error(e, call) from e
        except BaseException:
            closer.close()
            raise
        return cls(resp.extensions["network_stream"], call, resp, closer, proto)

    # Wire ----------------------------------------------------------------------------------

    def _read(self) -> bytes:
        try:
            chunk: bytes = self._stream.read(_READ, timeout=self.read_timeout)
        except Exception as e:  # httpcore2's ReadTimeout/ReadError: not httpx2's classes
            name = type(e).__name__
            if "Timeout" in name:
                raise Timeout(f"{self._call.what} on {self._call.server}: no output for "
                              f"{self.read_timeout:g}s", hint="is the command stuck?") from e
            raise Unreachable(f"{self._call.what} on {self._call.server}: the connection "
                              f"broke: {name}: {e}") from e
        return chunk

    def _take(self, n: int) -> bytes | None:
        """``n`` bytes of the wire; None when the connection ended first."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        parts = [self._buf[self._pos:]]
        need = n - avail
        while need > 0:
            chunk = self._read()
            if not chunk:
                self._buf, self._pos = b"", 0
                return None
            if len(chunk) > need:
                parts.append(chunk[:need])
                self._buf, self._pos = chunk, need
                return b"".join(parts)
            parts.append(chunk)
            need -= len(chunk)
        self._buf, self._pos = b"", 0
        return b"".join(parts)

    def _send(self, opcode: int, payload: bytes) -> None:
        data = frame(opcode, payload)
        with self._write_lock:
            try:
                self._stream.write(data, timeout=self._call.timeout)
            except Exception as e:  # httpcore2's WriteError/WriteTimeout
                raise Unreachable(f"{self._call.what} on {self._call.server}: cannot send: "
                                  f"{type(e).__name__}: {e}") from e

    def _next_frame(self) -> tuple[int, bytes] | None:
        """(channel, data) of the next stdout/stderr/Status frame; None at the end."""
        while not self._ended:
            head = self._take(2)
            if head is None:
                self._ended = True
                return None
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                ext = self._take(2)
                n = struct.unpack("!H", ext)[0] if ext else 0
            elif n == 127:
                ext = self._take(8)
                n = struct.unpack("!Q", ext)[0] if ext else 0
            key = self._take(4) if head[1] & 0x80 else None
            payload = self._take(n) if n else b""
            if payload is None:
                self._ended = True
                return None
            if key:
                payload = _mask(payload, key)
            if opcode == _OP_PING:
                self._send(_OP_PONG, payload)
                continue
            if opcode == _OP_CLOSE:
                self._ended = True
                with contextlib.suppress(AdapterError):
                    self._send(_OP_CLOSE, payload[:2])
                return None
            if opcode in (_OP_TEXT, _OP_BINARY):
                if not payload:
                    continue
                self._message_channel, payload = payload[0], payload[1:]
            elif opcode != _OP_CONT or self._message_channel is None:
                continue
            if payload or self._message_channel == ERROR:
                return self._message_channel, payload
        return None

    def _next_stdout(self) -> bytes | None:
        """The next stdout data; stderr and the Status are kept on the way. None at the end."""
        while True:
            got = self._next_frame()
            if got is None:
                return None
            channel, data = got
            if channel == STDOUT:
                return data
            if channel == STDERR:
                self._stderr += data
                del self._stderr[:-_STDERR_KEPT]
            elif channel == ERROR:
                with contextlib.suppress(ValueError):
                    self.status = json.loads(data)

    # Caller's side -------------------------------------------------------------------------

    def close_stdin(self) -> None:
        """End the remote input (v5; with v4 there is no way: the command must end itself)."""
        if self.subprotocol == PROTOCOLS[0]:
            self._send(_OP_BINARY, bytes((_CLOSE, STDIN)))

    def stderr_text(self) -> str:
        """The last 8,000 bytes the command wrote to stderr, then the server's failure message.

        As kubectl prints them: a command that could not start, or whose exit the runtime
        reports as an error rather than a NonZeroExitCode, is named only there.
        """
        text = self._stderr.decode("utf-8", "replace")
        st = self.status or {}
        if st.get("status") == "Failure" and st.get("reason") != "NonZeroExitCode":
            text += f"\nerror: {st.get('message') or st.get('reason') or 'failed'}"
        return text

    def wait(self, timeout: float | None = None) -> int:
        """Read to the end (the rest of stdout is discarded); the exit code (:meth:`exit_code`).

        Raises:
            Timeout: nothing came for ``timeout`` seconds (the connection is closed).
        """
        if timeout is not None:
            self.read_timeout = timeout
        try:
            while self._next_stdout() is not None:
                pass
        finally:
            self.close()
        return self.exit_code()

    def exit_code(self) -> int:
        """The command's exit code, as kubectl exits.

        0 for Success; the ExitCode cause of NonZeroExitCode; for another failure the
        ``exit status N`` the runtime names (kwok's wording), else 1; -1 when the connection
        ended without a Status.
        """
        st = self.status
        if st is None:
            return -1
        if st.get("status") == "Success":
            return 0
        for cause in ((st.get("details") or {}).get("causes") or []):
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
        found = _EXIT_STATUS.search(str(st.get("message") or ""))
        return int(found.group(1)) if found else 1

    def close(self) -> None:
        """Close the connection (the remote command gets a broken pipe if still running)."""
        self._ended = True
        with contextlib.suppress(Exception):
            self._closer.close()

    kill = close


class _Stdout(io.RawIOBase):
    """The stdout channel as a raw binary stream (wrapped in a BufferedReader)."""

    def __init__(self, session: ExecSession) -> None:
        self._s = session

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        s = self._s
        while not s._pending:
            data = s._next_stdout()
            if data is None:
                return 0
            s._pending = memoryview(data)
        n = min(len(b), len(s._pending))
        b[:n] = s._pending[:n]
        s._pending = s._pending[n:]
        return n


class _Stdin(io.RawIOBase):
    """The stdin channel: each write is one message; close ends the input (v5)."""

    def __init__(self, session: ExecSession) -> None:
        self._s = session

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        for i in range(0, len(data), _READ):
            self._s._send(_OP_BINARY, bytes((STDIN,)) + data[i:i + _READ])
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(AdapterError):
                self._s.close_stdin()
        super().close()
