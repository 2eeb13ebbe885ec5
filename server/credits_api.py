"""Async client for the NoneCap v1 REST API: the credits rail.

One pooled httpx client per process. Reads and cancels are retried on network errors, 5xx
and 429; a create is retried only when the API says nothing was created (429, 503) or the
request certainly never left. A create whose outcome is unknown (read timeout, dropped
connection) is reconciled against the newest solves before anything is sent again, so one
call never creates two solves or charges twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from nonecap_mcp import __version__
from nonecap_mcp.credentials import Secret
from nonecap_mcp.errors import (
    APIConnectionError,
    APIError,
    ConflictError,
    InvalidArgumentError,
    OutcomeUnknownError,
    api_error_class,
)
from nonecap_mcp.models import Account, Solve, SolveList
from nonecap_mcp.retry import RetryPolicy, call_with_retries, parse_retry_after

log = logging.getLogger("nonecap_mcp.http")

KeyProvider = Callable[[], Awaitable[Secret]]
SOLVE_ID = re.compile(r"^(solve|x402)_[0-9A-Za-z]{1,64}$")  # x402_… ids are local (the ledger)
READ_MARGIN_SECONDS = 15.0  # HTTP read timeout = ?wait + this, so a long-poll never times out first
RECONCILE_WINDOW = timedelta(minutes=2)  # clock skew we tolerate when matching a lost create
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_POST_RETRYABLE = frozenset({"pool_exhausted", "rate_limited", "concurrency_limit_exceeded"})


class _MaybeSent(Exception):
    """A non-idempotent request failed after it may have reached the server."""


def check_solve_id(value: str, param: str = "id") -> str:
    """A solve id safe to put in a URL path (no slashes, no query tricks)."""
    if not SOLVE_ID.match(value):
        raise InvalidArgumentError(param, f"{param} must be a solve id like solve_01HQF7K3JKWZX or x402_01HQF7K3JKWZX.")
    return value


class CreditsAPI:
    """The NoneCap v1 endpoints as typed async methods raising `nonecap_mcp.errors`."""

    def __init__(
        self,
        base_url: str,
        key_provider: KeyProvider,
        *,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key_provider = key_provider
        self._retry = retry or RetryPolicy()
        self._slots = anyio.Semaphore(max_concurrency)
        self._claimed: set[str] = set()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(10.0, read=30.0),
            headers={"User-Agent": f"nonecap-mcp/{__version__} httpx/{httpx.__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def api_key(self) -> Secret:
        """The key this client authenticates with (resolved lazily, wrapped so it never prints)."""
        return await self._key_provider()

    # -- transport -------------------------------------------------------------------

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any, read_timeout: float) -> httpx.Response:
        key = await self._key_provider()
        started = time.monotonic()
        response = await self._http.request(
            method,
            path,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {key.reveal()}"},
            timeout=httpx.Timeout(10.0, read=read_timeout),
        )
        log.info(
            "%s %s -> %s in %.0f ms (request %s)",
            method, path, response.status_code, (time.monotonic() - started) * 1000, response.headers.get("request-id", "-"),
        )
        return response

    @staticmethod
    def _error(response: httpx.Response) -> APIError:
        status = response.status_code
        try:
            envelope = response.json()["error"]
            code, message, param = str(envelope["code"]), str(envelope.get("message") or ""), envelope.get("param")
        except (ValueError, KeyError, TypeError):
            code, message, param = f"http_{status}", f"NoneCap answered HTTP {status} without an error envelope.", None
        return api_error_class(status)(
            code,
            message,
            http_status=status,
            param=param,
            request_id=response.headers.get("request-id"),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    @staticmethod
    def _retryable(method: str, error: APIError) -> bool:
        if method == "POST":
            return error.code in _POST_RETRYABLE
        return error.http_status >= 500 or error.http_status == 429

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        read_timeout: float = 30.0,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """One API call with the retry rules above; returns the decoded JSON object."""

        async def attempt() -> dict[str, Any]:
            try:
                response = await self._send(method, path, params, body, read_timeout)
            except _NEVER_SENT as exc:
                raise APIConnectionError(f"Could not connect to NoneCap ({type(exc).__name__}).") from None
            except httpx.TransportError as exc:
                if method == "POST":
                    raise _MaybeSent(type(exc).__name__) from exc
                raise APIConnectionError(f"The connection to NoneCap failed mid-request ({type(exc).__name__}).") from None
            if response.status_code >= 400:
                raise self._error(response)
            return self._decode(response)

        def retry_after_if_retryable(exc: Exception) -> float | None:
            if isinstance(exc, APIConnectionError):
                return 0.0
            if isinstance(exc, APIError) and self._retryable(method, exc):
                return exc.retry_after or 0.0
            return None

        return await call_with_retries(
            attempt, policy=self._retry, retry_after_if_retryable=retry_after_if_retryable, deadline=deadline, label=f"{method} {path}"
        )

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise APIError("unexpected_response", "NoneCap returned a body that is not a JSON object.", http_status=response.status_code)
        return data

    @staticmethod
    def _solve(data: dict[str, Any]) -> Solve:
        try:
            return Solve.model_validate(data).with_guidance()
        except ValueError:
            raise APIError("unexpected_response", "NoneCap returned a solve this client cannot read.", http_status=200) from None

    # -- endpoints -------------------------------------------------------------------

    async def create_solve(self, body: dict[str, Any], *, wait: int = 0, deadline: float | None = None) -> Solve:
        """POST /v1/solves (?wait), holding one of the local in-flight slots while it runs.

        If the caller is cancelled before the answer arrives, the solve it may have created
        is found and cancelled upstream, so its credit is refunded rather than spent.
        """
        async with self._slots:
            since = datetime.now(UTC)
            try:
                return await self._create_once_or_reconcile(body, wait, deadline, since)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await self._cancel_orphan(body, since)
                raise

    async def _create_once_or_reconcile(self, body: dict[str, Any], wait: int, deadline: float | None, since: datetime) -> Solve:
        params = {"wait": wait} if wait else None
        for _ in range(2):
            try:
                data = await self._request("POST", "/v1/solves", params=params, body=body, read_timeout=wait + READ_MARGIN_SECONDS, deadline=deadline)
            except _MaybeSent as exc:
                log.warning("create outcome unknown (%s); reconciling before any re-send", exc)
                found = await self._find_created(body, since)
                if found is None:
                    continue  # it was never created: sending again cannot charge twice
                return await self._finish_adopted(found, wait, deadline)
            solve = self._solve(data)
            self._claimed.add(solve.id)
            return solve
        raise OutcomeUnknownError("The create request failed twice without an answer and no new solve was found.")

    async def _finish_adopted(self, solve: Solve, wait: int, deadline: float | None) -> Solve:
        """Wait on a solve found by reconciliation for whatever is left of the caller's wait."""
        remaining = int(min(wait, (deadline - time.monotonic()) if deadline else wait))
        if solve.is_terminal or remaining < 1:
            return solve
        return await self.get_solve(solve.id, wait=remaining, deadline=deadline)

    async def _find_created(self, body: dict[str, Any], since: datetime) -> Solve | None:
        """The solve a lost create made, among the newest ones, if it exists."""
        try:
            for lookup in range(2):
                if lookup:
                    await anyio.sleep(0.5)
                page = await self.list_solves(limit=20, type=body["type"])
                for solve in reversed(page.data):
                    if self._matches(solve, body, since):
                        self._claimed.add(solve.id)
                        return solve
        except (APIError, APIConnectionError) as exc:
            raise OutcomeUnknownError(f"Could not check whether the create went through ({exc.code}).") from exc
        return None

    def _matches(self, solve: Solve, body: dict[str, Any], since: datetime) -> bool:
        if solve.id in self._claimed or (solve.sitekey, solve.url) != (body["sitekey"], body["url"]):
            return False
        try:
            created = datetime.fromisoformat(solve.created_at or "")
        except ValueError:
            return False
        return created >= since - RECONCILE_WINDOW

    async def _cancel_orphan(self, body: dict[str, Any], since: datetime) -> None:
        """Best effort: cancel (and so refund) a solve whose creating call was abandoned."""
        try:
            found = await self._find_created(body, since)
            if found is not None and not found.is_terminal:
                await self.cancel_solve(found.id)
                log.info("cancelled %s after the host cancelled the call; its credit is refunded", found.id)
        except (APIError, APIConnectionError, OutcomeUnknownError) as exc:
            log.warning("could not cancel an abandoned solve (%s)", exc.code)

    async def get_solve(self, solve_id: str, *, wait: int = 0, deadline: float | None = None) -> Solve:
        """GET /v1/solves/{id} (?wait long-poll); 200 and 202 both carry the solve."""
        params = {"wait": wait} if wait else None
        path = f"/v1/solves/{check_solve_id(solve_id)}"
        data = await self._request("GET", path, params=params, read_timeout=wait + READ_MARGIN_SECONDS, deadline=deadline)
        return self._solve(data)

    async def list_solves(
        self, *, limit: int = 20, starting_after: str | None = None, status: str | None = None, type: str | None = None
    ) -> SolveList:
        """GET /v1/solves, newest first; `next_starting_after` is the last id when has_more."""
        params = {"limit": limit, "starting_after": starting_after, "status": status, "type": type}
        data = await self._request("GET", "/v1/solves", params={k: v for k, v in params.items() if v is not None})
        try:
            solves = [Solve.model_validate(item).with_guidance() for item in data.get("data", [])]
            has_more = bool(data["has_more"])
        except (KeyError, ValueError):
            raise APIError("unexpected_response", "NoneCap returned a list this client cannot read.", http_status=200) from None
        return SolveList(data=solves, has_more=has_more, next_starting_after=solves[-1].id if has_more and solves else None)

    async def cancel_solve(self, solve_id: str) -> Solve:
        """DELETE /v1/solves/{id}; a 409 after our own retried DELETE means the first one worked."""
        path = f"/v1/solves/{check_solve_id(solve_id)}"
        try:
            return self._solve(await self._request("DELETE", path))
        except ConflictError as exc:
            if exc.retried:
                solve = await self.get_solve(solve_id)
                if solve.status == "cancelled":
                    return solve
            raise

    async def me(self) -> Account:
        """GET /v1/me: the account and its credit balance."""
        return Account.model_validate(await self._request("GET", "/v1/me"))
