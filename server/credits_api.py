"""Async client for the NoneCap v1 REST API: the credits rail.

One pooled httpx client per process. Reads and cancels are retried on network errors, 5xx
and 429; a create is retried only when the API says nothing was created (429, 503) or the
request certainly never left. A create whose outcome is unknown (read timeout, dropped
connection) is reconciled against the newest solves before anything is sent again, so one
call never creates two solves or charges twice.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx

from nonecap_mcp import __version__
from nonecap_mcp.credentials import Secret
from nonecap_mcp.config import API_MAX_WAIT_SECONDS as API_MAX_WAIT
from nonecap_mcp.errors import (
    APIConnectionError,
    APIError,
    ConflictError,
    InvalidArgumentError,
    NoneCapError,
    OutcomeUnknownError,
    api_error_class,
)
from nonecap_mcp.guidance import API_ERRORS
from nonecap_mcp.http_io import EXCHANGE_SECONDS, Redirected, Reply, ResponseTooLarge, current_deadline, exchange
from nonecap_mcp.models import Account, Solve, SolveList
from nonecap_mcp.retry import NEVER_SENT, RetryPolicy, call_with_retries, parse_retry_after

log = logging.getLogger("nonecap_mcp.http")

KeyProvider = Callable[[], Awaitable[Secret]]
SOLVE_ID = re.compile(r"^(solve|x402)_[0-9A-Za-z]{1,64}$")  # x402_… ids are local (the ledger)
READ_MARGIN_SECONDS = 4.0  # a long-poll's answer is due by ?wait + this; later, it is treated as lost
SLOT_WAIT_FLOOR_SECONDS = 10  # even a call that will not wait for its result queues this long for a slot
UNKNOWN_SKEW_WINDOW = timedelta(minutes=2)  # before any Date header, how far back a lost create may lie
KNOWN_SKEW_SLACK = timedelta(seconds=2)  # Date has 1 s resolution
_POST_RETRYABLE = frozenset({"pool_exhausted", "rate_limited", "concurrency_limit_exceeded"})


class _MaybeSent(Exception):
    """A non-idempotent request failed after it may have reached the server."""


@dataclass
class _Create:
    """What one create_solve call knows about what it may have created upstream."""

    body: dict[str, Any]
    page: tuple[str, str, str]  # (type, sitekey, url): what a lost create is matched on
    first_sent: datetime | None = None  # local time just before the first POST left
    maybe_created: bool = False  # a POST is out, or went unanswered
    solve_id: str | None = None


def _nothing_created(error: APIError) -> bool:
    """Error answers that prove no solve was made: every 4xx, and 503 pool_exhausted. Any
    other 5xx on a create (a crash, a gateway timeout) leaves the outcome unknown."""
    return error.http_status < 500 or error.code == "pool_exhausted"


def _seconds_left(deadline: float | None) -> int:
    """Whole seconds to the deadline, as the API's ?wait takes them (0 = do not wait)."""
    if deadline is None:
        return 0
    return max(0, min(API_MAX_WAIT, int(deadline - time.monotonic())))


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
        self._claimed: set[str] = set()  # ids some call of ours already returned
        self._unanswered: Counter[tuple[str, str, str]] = Counter()  # create POSTs awaiting an answer, per page
        self._clock_skew: float | None = None  # API clock minus ours, from Date headers
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers={"User-Agent": f"nonecap-mcp/{__version__} httpx/{httpx.__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def api_key(self) -> Secret:
        """The key this client authenticates with (resolved lazily, wrapped so it never prints)."""
        return await self._key_provider()

    # -- transport -------------------------------------------------------------------

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any, seconds: float) -> Reply:
        key = await self._key_provider()
        started = time.monotonic()
        response = await exchange(
            self._http,
            method,
            path,
            seconds=seconds,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {key.reveal()}"},
        )
        self._learn_clock(response)
        log.info(
            "%s %s -> %s in %.0f ms (request %s)",
            method, path, response.status_code, (time.monotonic() - started) * 1000, response.headers.get("request-id", "-"),
        )
        return response

    def _learn_clock(self, response: Reply) -> None:
        try:
            self._clock_skew = parsedate_to_datetime(response.headers["date"]).timestamp() - time.time()
        except (KeyError, TypeError, ValueError):
            pass

    @staticmethod
    def _error(response: Reply) -> APIError:
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
        long_poll_until: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """One API call with the retry rules above; returns the decoded JSON object.

        With `long_poll_until` (monotonic), each attempt asks `?wait` for the time left then,
        so a retry never makes the call outlast its caller's deadline.
        """

        async def attempt() -> dict[str, Any]:
            wait = _seconds_left(long_poll_until)
            query = (params or {}) | ({"wait": wait} if wait else {})
            try:
                response = await self._send(method, path, query or None, body, wait + READ_MARGIN_SECONDS if wait else EXCHANGE_SECONDS)
            except NEVER_SENT as exc:
                raise APIConnectionError(f"Could not connect to NoneCap ({type(exc).__name__}).") from None
            except (httpx.TransportError, Redirected, ResponseTooLarge) as exc:
                if method == "POST":  # answered or maybe delivered: a solve may exist
                    raise _MaybeSent(str(exc) or type(exc).__name__) from exc
                raise self._unread(exc) from None
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
    def _unread(exc: Exception) -> NoneCapError:
        """A read or cancel whose answer never arrived whole, or could not be read."""
        if isinstance(exc, Redirected):
            return NoneCapError("redirected", f"NoneCap answered {exc}; redirects are not followed, so the API key never goes elsewhere.")
        if isinstance(exc, ResponseTooLarge):
            return NoneCapError("response_too_large", f"NoneCap answered {exc}; it was not read.")
        return APIConnectionError(f"The connection to NoneCap failed mid-request ({type(exc).__name__}: {exc}).")

    @staticmethod
    def _decode(response: Reply) -> dict[str, Any]:
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

        `deadline` (monotonic) bounds the whole call: waiting for a slot, the long-poll and
        retries. If the caller is cancelled, the solve this call created (known by id, or
        found unambiguously after a lost answer) is cancelled upstream, so its credit is
        refunded rather than spent.
        """
        call = _Create(body=body, page=(body["type"], body["sitekey"], body["url"]))
        try:
            await self._take_slot(current_deadline(None if deadline is None else max(deadline, time.monotonic() + SLOT_WAIT_FLOOR_SECONDS)))
            try:
                return await self._create(call, wait, deadline)
            finally:
                self._slots.release()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._abandon(call)
            raise

    async def _take_slot(self, deadline: float | None) -> None:
        """Wait for one of the local in-flight slots, at most until the deadline."""
        try:
            self._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        with anyio.move_on_after(max(0.0, deadline - time.monotonic()) if deadline is not None else math.inf):
            await self._slots.acquire()
            return
        raise NoneCapError(
            "concurrency_limit_exceeded",
            "Every local solve slot stayed busy for the whole wait; nothing was created.",
            guidance=API_ERRORS["concurrency_limit_exceeded"],
        )

    async def _create(self, call: _Create, wait: int, deadline: float | None) -> Solve:
        """One create, long-polling in the POST itself (one request per solve) unless another
        create for the same page is unanswered: then POST without ?wait and long-poll with a
        GET, so each call learns its own id at once and a lost answer stays unambiguous."""
        until = deadline if deadline is not None else time.monotonic() + wait
        for _ in range(2):
            long_poll = _seconds_left(until) > 0 and self._unanswered[call.page] == 0
            call.maybe_created = True
            call.first_sent = call.first_sent or datetime.now(UTC)
            self._unanswered[call.page] += 1
            try:
                try:
                    data = await self._request(
                        "POST", "/v1/solves", body=call.body, long_poll_until=until if long_poll else None, deadline=until
                    )
                    solve = self._solve(data)
                finally:
                    self._unanswered[call.page] -= 1
            except (_MaybeSent, APIError) as exc:
                if isinstance(exc, APIError) and _nothing_created(exc):
                    call.maybe_created = False
                    raise
                log.warning("create outcome unknown (%s); reconciling before any re-send", getattr(exc, "code", exc))
                found = await self._find_created(call)
                if found is None:
                    call.maybe_created = False
                    continue  # it was never created: sending again cannot charge twice
                call.solve_id = found.id
                return await self._finish_known(found, until)
            except APIConnectionError:
                call.maybe_created = False  # never left
                raise
            call.solve_id = solve.id
            self._claimed.add(solve.id)
            return solve if long_poll else await self._finish_known(solve, until)
        raise OutcomeUnknownError("The create request failed twice without an answer and no new solve was found.")

    async def _finish_known(self, solve: Solve, until: float) -> Solve:
        """Wait on a solve this call owns for what is left of its wait. If that wait fails,
        the solve is still returned (pending, with guidance to poll): never lose its id."""
        remaining = _seconds_left(until)
        if solve.is_terminal or remaining < 1:
            return solve
        try:
            return await self.get_solve(solve.id, wait=remaining, deadline=until)
        except (APIError, APIConnectionError) as exc:
            log.warning("waiting on %s failed (%s); returning it as it was", solve.id, exc.code)
            return solve

    async def _find_created(self, call: _Create) -> Solve | None:
        """The solve a lost create made, if exactly one candidate can be it.

        Another unanswered create for the same page in this process (checked again after
        every listing, since one may start meanwhile), or two candidates, make the answer
        ambiguous: then nothing is adopted, cancelled or re-sent.
        """
        try:
            for lookup in range(2):
                if lookup:
                    await anyio.sleep(0.5)
                page = await self.list_solves(limit=20, type=call.body["type"])
                if self._unanswered[call.page] > 0:
                    raise OutcomeUnknownError("Another create for the same page was in flight, so the lost answer cannot be matched safely.")
                candidates = [solve for solve in page.data if self._matches(solve, call)]
                if len(candidates) > 1:
                    raise OutcomeUnknownError(f"Several new solves could be this call's: {', '.join(s.id for s in candidates)}.")
                if candidates:
                    self._claimed.add(candidates[0].id)
                    return candidates[0]
        except (APIError, APIConnectionError) as exc:
            raise OutcomeUnknownError(f"Could not check whether the create went through ({exc.code}).") from exc
        return None

    def _matches(self, solve: Solve, call: _Create) -> bool:
        if solve.id in self._claimed or (solve.type, solve.sitekey, solve.url) != call.page:
            return False
        try:
            created = datetime.fromisoformat(solve.created_at or "")
        except ValueError:
            return False
        return created >= self._on_api_clock(call.first_sent or datetime.now(UTC))

    def _on_api_clock(self, moment: datetime) -> datetime:
        """A local time on the API's clock (learned from its Date headers, including the
        listing just made), minus the slack that clock's 1 s resolution needs."""
        if self._clock_skew is None:
            return moment - UNKNOWN_SKEW_WINDOW
        return moment + timedelta(seconds=self._clock_skew) - KNOWN_SKEW_SLACK

    async def _abandon(self, call: _Create) -> None:
        """Best effort: cancel (and so refund) what an abandoned call created."""
        try:
            solve_id = call.solve_id
            if solve_id is None and call.maybe_created:
                found = await self._find_created(call)
                solve_id = found.id if found else None
            if solve_id is not None:
                await self.cancel_solve(solve_id)
                log.info("cancelled %s after the host cancelled the call; its credit is refunded", solve_id)
        except ConflictError:
            pass  # it had already finished
        except (APIError, APIConnectionError, OutcomeUnknownError) as exc:
            log.warning("could not cancel an abandoned solve (%s)", exc.code)

    async def get_solve(self, solve_id: str, *, wait: int = 0, deadline: float | None = None) -> Solve:
        """GET /v1/solves/{id} (?wait long-poll); 200 and 202 both carry the solve."""
        path = f"/v1/solves/{check_solve_id(solve_id)}"
        until = time.monotonic() + wait if deadline is None else min(deadline, time.monotonic() + wait)
        return self._solve(await self._request("GET", path, long_poll_until=until, deadline=deadline))

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
