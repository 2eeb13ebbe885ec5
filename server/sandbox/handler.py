"""HTTP/1.1 transport of the sandbox on the standard library's ThreadingHTTPServer.

Keep-alive with Content-Length on every answer, the JSON error envelope even for requests
the stdlib rejects while parsing, a Request-Id on every response, faults applied before
the API sees a request, and no output except DEBUG logging (stdout belongs to MCP).
Three surfaces share the port: /v1 (error envelope), /x402/* (the rail's `{"error"}`
bodies) and /rpc (JSON-RPC errors); faults apply to all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from nonecap_mcp.sandbox.api import V1_ROUTES, ApiRequest, dispatch
from nonecap_mcp.sandbox.chain import rpc_error_response
from nonecap_mcp.sandbox.control import CONTROL_ROUTES, is_control_path
from nonecap_mcp.sandbox.errors import CODE_BY_STATUS, ApiError, Interrupted, Response
from nonecap_mcp.sandbox.faults import Fault
from nonecap_mcp.sandbox.state import SandboxState
from nonecap_mcp.sandbox.x402 import is_x402_path, rail_error

log = logging.getLogger("nonecap_mcp.sandbox")

MAX_BODY_BYTES = 1 << 20


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading server that knows its state and can cut its open keep-alive connections."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        super().__init__(address, SandboxRequestHandler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host: the sandbox sends nothing out."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, open_: bool) -> None:
        """Remember open connections so `close_connections` can end idle keep-alives."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open connection, so no handler thread serves after stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """A broken connection is routine for a test server: log it, never print it."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Turns one HTTP request into an ApiRequest, applies faults, writes the JSON answer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would add ~40 ms
    server_version = "nonecap-sandbox"
    sys_version = ""
    server: SandboxHTTPServer

    def setup(self) -> None:
        """Track the connection for the whole keep-alive session."""
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        """Forget the connection once the session is over."""
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        """The stdlib writes access logs to stderr; route them to our logger at DEBUG."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests the stdlib rejects while parsing (bad request line, unknown method) get the envelope too."""
        self.close_connection = True
        self._send(ApiError(CODE_BY_STATUS.get(code, "invalid_request"), message, status=code).response())

    def do_request(self) -> None:
        """Every method lands here; the routers decide 404 and 405."""
        parts = urlsplit(self.path)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        state = self.server.state
        if is_control_path(path):  # never logged, never faulted
            self._send(self._answer(lambda body: dispatch(CONTROL_ROUTES, state, self._api_request(path, query, body))))
            return
        interrupted = state.interruption()
        entry = state.log_request(self.command, path, query)
        fault = state.take_fault(self.command, path)
        if fault is not None and fault.action == "drop_before":
            self._discard_body()
            self._drop(fault)
            return
        try:
            response = self._answer(lambda body: self._process(fault, self._api_request(path, query, body, interrupted)))
        except Interrupted:
            log.debug("interrupted by a reset or stop: dropping %s %s", self.command, self.path)
            self.close_connection = True
            return
        if fault is not None and fault.action == "drop_after":
            self._drop(fault)
            return
        state.log_status(entry, response.status)
        self._send(response)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_request

    def _process(self, fault: Fault | None, request: ApiRequest) -> Response:
        """The API's answer, or the fault's; a delay fault sleeps first, and a reset or stop
        during it ends the request with nothing done (it belonged to the sandbox before)."""
        if fault is not None and fault.action == "status":
            raise fault.error()
        if fault is not None and fault.action == "delay":
            request.interrupted.wait(fault.seconds)
        if request.interrupted.is_set():  # reset while it waited, or while its body was still arriving
            raise Interrupted
        state, path = self.server.state, request.path
        if is_x402_path(path):
            return state.x402.handle(request)
        if path == "/rpc":
            return state.x402.chain.handle_rpc(request)
        return dispatch(V1_ROUTES, state, request)

    def _api_request(
        self, path: str, query: dict[str, str], body: bytes, interrupted: threading.Event | None = None
    ) -> ApiRequest:
        """What the endpoints need from this request."""
        return ApiRequest(
            self.command,
            path,
            query,
            self.headers.get("Authorization"),
            body,
            headers={name.lower(): value for name, value in self.headers.items()},
            client_ip=str(self.client_address[0]),
            server_url=f"http://{self.server.server_name}:{self.server.server_port}",
            interrupted=interrupted or threading.Event(),
        )

    def _answer(self, produce: Callable[[bytes], Response]) -> Response:
        """Read the body, run `produce(body)`, and turn any error into the path's error shape."""
        try:
            return produce(self._read_body())
        except ApiError as error:
            return self._error_response(error)
        except Interrupted:
            raise
        except Exception:  # a sandbox bug must still answer with the envelope, not a traceback
            log.debug("sandbox failed on %s %s", self.command, self.path, exc_info=True)
            return self._error_response(ApiError("internal_error"))

    def _error_response(self, error: ApiError) -> Response:
        """The envelope on /v1 and control paths, the rail's shape on /x402/*, JSON-RPC on /rpc."""
        path = urlsplit(self.path).path
        if is_x402_path(path):
            return rail_error(error)
        if path == "/rpc":
            return rpc_error_response(error)
        return error.response()

    def _discard_body(self) -> None:
        """Consume the body of a request that will not be processed, so the close is a clean FIN."""
        with contextlib.suppress(ApiError):  # the connection is being closed anyway
            self._read_body()

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked), so keep-alive stays in step."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            self.close_connection = True
            raise ApiError("invalid_request", "Invalid Content-Length header.")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError("payload_too_large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        """Decode a chunked body, refusing malformed or oversized ones (and closing after)."""
        chunks: list[bytes] = []
        size_total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                self.close_connection = True
                raise ApiError("invalid_request", "Malformed chunked request body.") from None
            size_total += size
            if size_total > MAX_BODY_BYTES:
                self.close_connection = True
                raise ApiError("payload_too_large")
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _drop(self, fault: Fault) -> None:
        """Close the connection without a response (the request is not answered)."""
        log.debug("fault %s: dropping %s %s", fault.action, self.command, self.path)
        self.close_connection = True

    def _send(self, response: Response) -> None:
        """Write status, headers and JSON body in one go."""
        payload = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(12))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
