"""`Sandbox`: the NoneCap v1 API emulated on 127.0.0.1, in a background thread.

It never makes an outbound request: there is no solver behind it. Outcomes are chosen by
test sitekeys (see `TEST_SITEKEYS`), so agents can be tested offline, deterministically.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from nonecap_mcp.sandbox.faults import make_fault
from nonecap_mcp.sandbox.handler import SandboxHTTPServer
from nonecap_mcp.sandbox.state import SANDBOX_API_KEY, RecordedRequest, SandboxState

log = logging.getLogger("nonecap_mcp.sandbox")

POLL_INTERVAL_S = 0.05  # how often serve_forever checks for shutdown: keeps stop() fast


class Sandbox:
    """An offline NoneCap v1 API on 127.0.0.1 for tests and `--sandbox` mode.

    Behaviour follows the v1 spec: Bearer auth (401 unauthorized, 403 account_locked), one
    credit debited at submit and refunded when a solve fails, is cancelled or expires, a
    cap of `max_in_flight` pending+solving solves (429 concurrency_limit_exceeded), 402
    insufficient_credits, `?wait=N` long-polls, cursor pagination, cancel with 409 conflict,
    and the `{"error": {"code", "message", "param"}}` envelope on every error.

    Accounts: `SANDBOX_API_KEY` (100 credits unless `credits` says otherwise) and
    `LOCKED_API_KEY` (locked by an administrator: every call is 403). Add more with
    `add_account`. Tokens look like `P1_SANDBOX_…_NOT_A_REAL_HCAPTCHA_TOKEN`.

    Test sitekeys (`TEST_SITEKEYS`), where N is `<digits>ms` or `<digits>s`:

    ==================================  ==================================================
    sitekey                             what happens
    ==================================  ==================================================
    ``sandbox-solve-<N>``               solved after N: queued for the first 20%, then
                                        solving; N capped at 90 s
    ``sandbox-fail-<code>[-<N>]``       failed after 300 ms (or N) with that error.code:
                                        challenge_not_loaded, token_not_granted,
                                        challenge_expired, challenge_errored, proxy_error,
                                        target_unreachable, vision_error
    ``sandbox-expire[-<N>]``            expired after 2 s (or N, max 120 s) while still
                                        queued: started_at/resolve_ms null, queue_ms the
                                        full wait
    ``sandbox-hang``                    picked up after 200 ms, solving until the 120 s
                                        budget runs out, then expired
    ``sandbox-<anything else>``         422 validation_error, param sitekey (typo guard)
    any other sitekey                   solved after 1.5 s (300 ms queued)
    ==================================  ==================================================

    Faults (`inject_fault`, or `POST /_sandbox/faults`) make the next matching requests fail.
    Control endpoints, unauthenticated and never logged: `POST /_sandbox/faults`,
    `POST /_sandbox/accounts`, `POST /_sandbox/reset`, `GET|DELETE /_sandbox/requests`,
    `GET /_sandbox/sitekeys`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, credits: int = 100, max_in_flight: int = 5) -> None:
        self._address = (host, port)
        self._state = SandboxState(credits=credits, max_in_flight=max_in_flight)
        self._lifecycle = threading.Lock()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.api_key = SANDBOX_API_KEY

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; a second call is a no-op. State survives stop/start."""
        with self._lifecycle:
            if self._server is None:
                self._state.set_closing(False)
                server = SandboxHTTPServer(self._address, self._state)
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": POLL_INTERVAL_S},
                    name="nonecap-sandbox",
                    daemon=True,
                )
                thread.start()
                self._server, self._thread = server, thread
                log.debug("sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, release long-polls and delays, cut open connections, join the thread."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.stopping.set()
        self._state.set_closing(True)
        server.close_connections()
        server.server_close()
        thread.join()
        log.debug("sandbox stopped")

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no /v1: clients append the paths)."""
        server = self._server
        if server is None:
            raise RuntimeError("Sandbox is not running; call start() first")
        return f"http://{server.server_name}:{server.server_port}"

    # -- controls --------------------------------------------------------------------

    def add_account(self, api_key: str, *, credits: int = 100, locked: bool = False, email: str | None = None) -> None:
        """Add an account (api_key must be nc_test_ + 32 base64url chars); an existing one is updated."""
        self._state.add_account(api_key, credits=credits, locked=locked, email=email)

    def set_balance(self, credits: int, api_key: str = SANDBOX_API_KEY) -> None:
        """Set an account's balance as of now (solves still in flight may refund on top later)."""
        self._state.set_balance(api_key, credits)

    def inject_fault(
        self,
        *,
        method: str,
        path: str,
        action: str,
        times: int = 1,
        status: int | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Arm a fault for the next `times` requests matching method (or "*") and path.

        `path` is exact, or a prefix when it ends in `*` (e.g. "/v1/solves/*"). Actions:
        "status" answers `status`/`code` (either implies the other) with the error envelope and
        a Retry-After of `retry_after` (503 pool_exhausted defaults to 1); "drop_before" closes
        the connection without processing; "drop_after" processes fully (a POST creates and
        debits) then closes without answering; "delay" sleeps `seconds` (or `retry_after`)
        first. Raises ValueError on bad arguments.
        """
        fault = make_fault(
            method=method,
            path=path,
            action=action,
            times=times,
            status=status,
            code=code,
            retry_after=retry_after,
            seconds=seconds,
        )
        self._state.add_fault(fault)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request received, oldest first (control endpoints excluded); a copy."""
        return self._state.recorded()

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._state.clear_log()

    def reset(self) -> None:
        """Solves, faults, request log and accounts back to defaults."""
        self._state.reset()
