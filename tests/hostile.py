"""A hostile upstream on 127.0.0.1: one raw-socket HTTP server that plays every upstream at
once (credits API, x402 rail and Base RPC) and misbehaves on purpose, so tests can prove each
promise holds when the upstream fails or lies. Stdlib only; one thread, one event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from email.utils import formatdate
from pathlib import Path

from conftest import SCALE_ENV
from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY

MIB = 1024 * 1024
HUGE_BYTES = 220 * MIB
SOLVE_ID = "solve_01HQF7K3JKWZX"

# What `odd` answers: a created-looking solve whose non-essential fields have the wrong types,
# a listing without data and a NaN balance (Python's json writes NaN, as a careless upstream does).
ODD_BODY = json.dumps({
    "id": SOLVE_ID, "object": "solve", "status": "solving", "type": "hcaptcha",
    "resultToken": {"not": "a string"}, "queue_ms": 1.5, "data": None, "credits_balance": float("nan"),
}).encode()


class Hostile:
    """An HTTP/1.1 server in its own thread whose every answer is `mode`'s misbehaviour.

    Modes: stall (accept, never answer), trickle (a byte a second), reset (close mid-body),
    huge (a chunked body past 200 MB, made as it is read), html502 (a gateway's HTML page), waf403
    (a web firewall's HTML refusal in front of the API),
    redirect (307), throttle (429 with an absurd Retry-After), storm (429, Retry-After 1, always),
    odd (wrong JSON types), bare (a solve with only id and status), dated (429 with an HTTP-date
    Retry-After and a Request-Id), echo (a 422 that repeats the request's headers and body), skew
    (the odd body under a Date header ten years off).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[tuple[str, str]] = []  # (method, path without query)
        self.heads: list[str] = []  # each request's line and headers, as received
        self.body_bytes_sent = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self, path: str) -> int:
        return self.requests.count(("POST", path))

    def __enter__(self) -> Hostile:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        self._loop.call_later(0.1, self._loop.stop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            method, target = head.split(" ", 2)[:2]
            length = next((int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")), 0)
            body = await reader.readexactly(length)
            self.requests.append((method, target.split("?")[0]))
            self.heads.append(head)
            await getattr(self, "_" + self.mode)(writer, head.encode("latin-1") + body)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    def _head(status: str, *headers: str) -> bytes:
        return ("\r\n".join([f"HTTP/1.1 {status}", *headers, "Connection: close", "", ""])).encode()

    async def _send(self, writer: asyncio.StreamWriter, status: str, body: bytes, *headers: str,
                    kind: str = "application/json") -> None:
        writer.write(self._head(status, f"Content-Type: {kind}", f"Content-Length: {len(body)}", *headers) + body)
        await writer.drain()

    async def _stall(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(3600)

    async def _trickle(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(self._head("200 OK", "Content-Type: application/json", "Content-Length: 100000"))
        while True:  # every chunk comes well within httpx's read timeout
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(1)

    async def _reset(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(self._head("200 OK", "Content-Type: application/json", "Content-Length: 4096") + b'{"id": "solve_')
        await writer.drain()
        writer.transport.abort()  # an RST, not a clean close: the body never completes

    async def _huge(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(self._head("200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked"))
        chunk = b'{"pad": "' + b"x" * (64 * 1024 - 9)
        while self.body_bytes_sent < HUGE_BYTES:  # made as it is read, never held
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            self.body_bytes_sent += len(chunk)
            chunk = b"x" * len(chunk)
        writer.write(b'"}\r\n0\r\n\r\n')

    async def _html502(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await self._send(writer, "502 Bad Gateway", b"<html><body><h1>502 Bad Gateway</h1></body></html>", kind="text/html")

    async def _waf403(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await self._send(writer, "403 Forbidden", b"<html><body>Request blocked by the firewall.</body></html>", kind="text/html")

    async def _redirect(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(self._head("307 Temporary Redirect", f"Location: http://127.0.0.1:{self.port}/elsewhere?token=abc", "Content-Length: 0"))
        await writer.drain()

    async def _throttle(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        body = b'{"error": {"code": "rate_limited", "message": "slow down"}}'
        await self._send(writer, "429 Too Many Requests", body, "Retry-After: " + "9" * 400)

    async def _storm(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        body = b'{"error": {"code": "rate_limited", "message": "slow down"}}'
        await self._send(writer, "429 Too Many Requests", body, "Retry-After: 1")

    async def _odd(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await self._send(writer, "200 OK", ODD_BODY)

    async def _bare(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await self._send(writer, "200 OK", json.dumps({"id": SOLVE_ID, "status": "solving"}).encode())

    async def _dated(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        body = b'{"error": {"code": "rate_limited", "message": "slow down", "request_id": "req_from_body"}}'
        await self._send(writer, "429 Too Many Requests", body, "Retry-After: " + formatdate(time.time() + 30, usegmt=True),
                         "Request-Id: req_hostile", "X-Request-Id: req_other")

    async def _skew(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        await self._send(writer, "200 OK", ODD_BODY, "Date: " + formatdate(0, usegmt=True).replace("1970", "2016"))

    async def _echo(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        echoed = request.decode("latin-1")
        body = json.dumps({"error": {"code": echoed[:400], "message": echoed}}).encode()
        await self._send(writer, "422 Unprocessable Entity", body)


def hostile_env(server: Hostile, state_dir: Path) -> dict[str, str]:
    """Every upstream of both rails at the hostile server, both rails configured."""
    return {
        "NONECAP_API_KEY": SANDBOX_API_KEY,
        "NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY,
        "NONECAP_API_BASE": server.url,
        "NONECAP_X402_BASE": server.url,
        "NONECAP_BASE_RPC_URL": f"{server.url}/rpc",
        "NONECAP_STATE_DIR": str(state_dir),
        "NONECAP_CONFIRM_ABOVE_USD": "1",
        **SCALE_ENV,
    }
