"""`Sandbox`: the NoneCap v1 API emulated on 127.0.0.1, in a background thread.

It never makes an outbound request: there is no solver behind it. Outcomes are chosen by
test sitekeys (see `TEST_SITEKEYS`), so agents can be tested offline, deterministically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType

from nonecap_mcp.sandbox.chain import Settlement
from nonecap_mcp.sandbox.errors import InvalidField
from nonecap_mcp.sandbox.faults import make_fault
from nonecap_mcp.sandbox.handler import SandboxHTTPServer
from nonecap_mcp.sandbox.state import DAILY_SOLVES, SANDBOX_API_KEY, RecordedRequest, SandboxState
from nonecap_mcp.sandbox.x402 import DEFAULT_RATE_LIMIT, SOLVE_CAP_S, PaymentAttempt, check_address, fund_amount
from nonecap_mcp.x402.networks import atomic_to_usd

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

    The same sitekeys drive the x402 rail (`/x402/pricing`, `/x402/createTask`,
    `/x402/getTaskResult`; see `nonecap_mcp.sandbox.x402`), which is paid in pretend USDC on a
    sandbox chain (`POST /rpc`: eth_chainId, USDC balanceOf and authorizationState). The
    public, worthless `SANDBOX_WALLET_KEY` holds 5.00 USDC after every reset; `fund` sets any
    other address's balance (0 by default). Payments go to `SANDBOX_PAY_TO`. x402 requests are
    limited to `x402_rate_limit` per minute per IP (429), and a solve that runs longer than
    `x402_solve_timeout` seconds (60) is a 504. `set_x402` switches the 402s to x402 v2 or
    makes them hostile; `settlements` and `payment_attempts` show what was paid and tried.

    Faults (`inject_fault`, or `POST /_sandbox/faults`) make the next matching requests fail,
    on /v1, /x402 and /rpc alike (a drop_after on /x402/createTask loses the answer after the
    payment settled). Control endpoints, unauthenticated and never logged:
    `POST /_sandbox/faults`, `POST /_sandbox/accounts`, `POST /_sandbox/reset`,
    `GET|DELETE /_sandbox/requests`, `GET /_sandbox/sitekeys`, `GET|POST /_sandbox/x402`
    (`{version, overrides}`), `POST /_sandbox/x402/fund` (`{address, usd}`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credits: int = 100,
        max_in_flight: int = 5,
        x402_rate_limit: int = DEFAULT_RATE_LIMIT,
        x402_solve_timeout: float = SOLVE_CAP_S,
    ) -> None:
        self._address = (host, port)
        self._state = SandboxState(
            credits=credits,
            max_in_flight=max_in_flight,
            x402_rate_limit=x402_rate_limit,
            x402_solve_timeout=x402_solve_timeout,
        )
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

    def add_account(
        self,
        api_key: str,
        *,
        credits: int = 100,
        locked: bool = False,
        email: str | None = None,
        daily_solves: int | None = DAILY_SOLVES,
    ) -> None:
        """Add an account (api_key must be nc_test_ + 32 base64url chars); an existing one is updated.
        `daily_solves` is the plan's allowance shown by /v1/me (None: an account without a plan)."""
        self._state.add_account(api_key, credits=credits, locked=locked, email=email, daily_solves=daily_solves)

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
        skip: int = 0,
    ) -> None:
        """Arm a fault for the next `times` requests matching method (or "*") and path,
        after letting the first `skip` of them through (e.g. skip=1 on /x402/createTask hits
        the paid request after the unpaid 402 probe).

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
            skip=skip,
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
        """Solves, faults, request log and accounts back to defaults; x402 back to v1 without
        overrides, default balances, no used nonce, settlement or payment attempt, empty rate window."""
        self._state.reset()

    # -- x402 --------------------------------------------------------------------------

    def set_x402(self, version: int = 1, overrides: Mapping[str, object] | None = None) -> None:
        """Speak x402 `version` (1: JSON 402 body, X-PAYMENT; 2: PAYMENT-REQUIRED header,
        PAYMENT-SIGNATURE) and replace fields of the offered accept with `overrides`.

        Keys replace accept fields (None removes one), except top-level ``x402Version`` and
        ``error`` (and in v2 ``resource`` and ``extensions``); ``accepts`` (a list) replaces the
        whole list verbatim. Payments are verified against what is offered, hostile or not.
        Raises ValueError on bad arguments.
        """
        try:
            self._state.x402.configure(version, overrides)
        except InvalidField as error:
            raise ValueError(str(error)) from None

    @property
    def x402_version(self) -> int:
        """The x402 version the rail speaks (1 or 2)."""
        return self._state.x402.config()[0]

    @x402_version.setter
    def x402_version(self, version: int) -> None:
        self.set_x402(version, self.x402_overrides)

    @property
    def x402_overrides(self) -> dict[str, object]:
        """A copy of the current 402 overrides."""
        return self._state.x402.config()[1]

    def usdc_balance(self, address: str) -> Decimal:
        """The sandbox USDC balance of `address`, exact."""
        return atomic_to_usd(self._state.x402.chain.balance(check_address_arg(address)))

    def fund(self, address: str, usd: str | Decimal) -> None:
        """Set the sandbox USDC balance of `address` to `usd` (a str or Decimal, never a float)."""
        address = check_address_arg(address)
        try:
            atomic = fund_amount(usd)
        except InvalidField as error:
            raise ValueError(str(error)) from None
        self._state.x402.chain.set_balance(address, atomic)

    @property
    def settlements(self) -> list[Settlement]:
        """Every settled x402 payment (payer, pay_to, nonce, value, transaction, …), oldest first."""
        return self._state.x402.settlements()

    @property
    def payment_attempts(self) -> list[PaymentAttempt]:
        """Every x402 payment header received and its outcome, oldest first."""
        return self._state.x402.payment_attempts()


def check_address_arg(address: str) -> str:
    """An address argument, or ValueError."""
    try:
        return check_address(address)
    except InvalidField as error:
        raise ValueError(str(error)) from None
