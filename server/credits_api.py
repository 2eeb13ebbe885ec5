"""Async client for the NoneCap v1 REST API: the credits rail.

Requests go out through NoneCap's official client (`nonecap`) on one pooled, bounded httpx
client per process (`official_wire` says which of its parts are used and why the rest is
ours); the rules below sit on top of it, since it has none of them. Reads and cancels are
retried on network errors, 5xx and 429; a create is retried only when the API says nothing
was created (429, 503) or the request certainly never left. A create whose outcome is unknown (read timeout, dropped
connection, a 2xx without a readable solve id) is reconciled against the newest solves
before anything is sent again, so one call never creates two solves or charges twice; the
create log (`create_log`) keeps that reconciliation from taking a solve another call, in
this process or another one on the same store (the state dir, or PostgreSQL for replicas), may
have made. The same record holds the account's solve slots (`slots` waits for one), so the
processes sharing it never start more solves together than the account runs at once.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx

from nonecap_mcp import metrics
from nonecap_mcp import official_wire
from nonecap_mcp.create_log import CreateLog, Intent, fingerprint
from nonecap_mcp.credentials import Secret
from nonecap_mcp.config import API_MAX_WAIT_SECONDS as API_MAX_WAIT
from nonecap_mcp.errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    ConflictError,
    NoneCapError,
    OutcomeUnknownError,
)
from nonecap_mcp.ids import CREDITS_PREFIX, SOLVE_ID, check_solve_id
from nonecap_mcp.models import Account, Feedback, Solve, SolveList
from nonecap_mcp.deadline import call_deadline, current_deadline
from nonecap_mcp.config import scaled
from nonecap_mcp.http_io import EXCHANGE_SECONDS, Redirected, Reply, ResponseTooLarge
from nonecap_mcp.retry import NEVER_SENT, RetryPolicy, call_with_retries
from nonecap_mcp.slots import SlotGate
from nonecap_mcp.store.db import store_errors

if TYPE_CHECKING:
    import nonecap

log = logging.getLogger("nonecap_mcp.http")

T = TypeVar("T")
KeyProvider = Callable[[], Awaitable[Secret]]
READ_MARGIN_SECONDS = scaled(4.0)  # a long-poll's answer is due by ?wait + this; later, it is treated as lost
SLOT_WAIT_FLOOR_SECONDS = scaled(10)  # even a call that will not wait for its result queues this long for a slot
UNKNOWN_SKEW_WINDOW = timedelta(minutes=2)  # before any Date header, how far back a lost create may lie
KNOWN_SKEW_SLACK = timedelta(seconds=2)  # Date has 1 s resolution
FEEDBACK_REASON_CHARS, FEEDBACK_CONTEXT_CHARS = 512, 2000  # what NoneCap keeps of a report's texts
_POST_RETRYABLE = frozenset({"pool_exhausted", "rate_limited", "concurrency_limit_exceeded"})


class _MaybeSent(Exception):
    """A non-idempotent request failed after it may have reached the server."""


@dataclass
class _Create:
    """What one create_solve call knows about what it may have created upstream."""

    body: dict[str, Any]
    page: tuple[str, str, str]  # (type, sitekey, url): what a lost create is matched on
    account: str  # fingerprints (see create_log): whose creates can collide with this one
    page_key: str
    call_id: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex}")
    started: float | None = None  # monotonic, when the intent was written (before the first POST)
    first_sent: datetime | None = None  # local time just before the first POST left
    maybe_created: bool = False  # a POST is out, went unanswered, or made a solve
    solve_id: str | None = None


def _nothing_created(error: APIError) -> bool:
    """Error answers that prove no solve was made: every 4xx, and 503 pool_exhausted or maintenance (new solves paused). A 2xx
    or 3xx that cannot be read, and any other 5xx (a crash, a gateway timeout), leave the
    outcome unknown."""
    return 400 <= error.http_status < 500 or error.code in ("pool_exhausted", "maintenance")


def _created_at(solve: Solve) -> datetime:
    """When the API says a solve of the lost create's page was made (its clock). Without a
    readable time it cannot be ruled out as that create's: the outcome is unknown."""
    try:
        created = datetime.fromisoformat(solve.created_at or "")
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise OutcomeUnknownError(f"{solve.id} has no readable created_at, so it cannot be ruled out as this create's.")
    return created


def _seconds_left(deadline: float | None) -> int:
    """Whole seconds to the deadline, as the API's ?wait takes them (0 = do not wait)."""
    if deadline is None:
        return 0
    return max(0, min(API_MAX_WAIT, int(deadline - time.monotonic())))


class CreditsAPI:
    """The NoneCap v1 endpoints as typed async methods raising `nonecap_mcp.errors`."""

    def __init__(
        self,
        base_url: str,
        key_provider: KeyProvider,
        *,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 5,
        creates: CreateLog | None = None,
    ) -> None:
        self._key_provider = key_provider
        self._retry = retry or RetryPolicy()
        self._gate = SlotGate(max_concurrency)
        self._creates = creates or CreateLog(None)  # None: private to this process
        self._clock_skew: float | None = None  # API clock minus ours, from Date headers
        self._http = official_wire.pooled_client(base_url, self._observe_reply)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def api_key(self) -> Secret:
        """The key this client authenticates with (resolved lazily, wrapped so it never prints)."""
        return await self._key_provider()

    # -- transport (official_wire: nonecap's client under our bounds) ------------------

    def _observe_reply(self, request: httpx.Request, reply: Reply, seconds: float) -> None:
        """Every whole answer: log it, and learn the API's clock from its Date header."""
        try:
            self._clock_skew = parsedate_to_datetime(reply.headers["date"]).timestamp() - time.time()
        except (KeyError, TypeError, ValueError):
            pass
        metrics.upstream("credits", reply.status_code)
        log.info(
            "%s %s -> %s in %.0f ms (request %s)",
            request.method, request.url.path, reply.status_code, seconds * 1000, reply.headers.get("request-id", "-"),
        )

    @staticmethod
    def _retryable(creates: bool, error: APIError) -> bool:
        if creates:
            return error.code in _POST_RETRYABLE
        return error.http_status >= 500 or error.http_status == 429

    async def _request(
        self,
        method: str,
        path: str,
        call: Callable[[nonecap.AsyncNoneCap, int | None], Awaitable[object]],
        *,
        long_poll_until: float | None = None,
        deadline: float | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """One API call (`call(client, wait)`, `method path` as nonecap sends it) with the
        retry rules above; returns the decoded JSON object. A POST that may create (and charge) is
        never re-sent after an outcome it cannot know; an `idempotent` one (a verdict that a repeat
        only restates) is retried like a read.

        With `long_poll_until` (monotonic), each attempt asks `?wait` for the time left then,
        so a retry never makes the call outlast its caller's deadline.
        """

        creates = method == "POST" and not idempotent

        async def attempt() -> dict[str, Any]:
            wait = _seconds_left(long_poll_until)
            key = await self._key_provider()
            try:
                with call_deadline(wait + READ_MARGIN_SECONDS if wait else EXCHANGE_SECONDS):
                    reply = await official_wire.send(self._http, key.reveal(), lambda client: call(client, wait or None))
            except NEVER_SENT as exc:
                raise APIConnectionError(f"Could not connect to NoneCap ({type(exc).__name__}).") from None
            except (httpx.TransportError, Redirected, ResponseTooLarge) as exc:
                if creates:  # answered or maybe delivered: a solve may exist
                    raise _MaybeSent(str(exc) or type(exc).__name__) from exc
                raise self._unread(exc) from None
            return self._decode(reply)

        def retry_after_if_retryable(exc: Exception) -> float | None:
            if isinstance(exc, APIConnectionError):
                return 0.0
            if isinstance(exc, APIError) and self._retryable(creates, exc):
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

    def _read_solve(self, data: Any) -> Solve | None:
        """The solve in an answer, with guidance, or None when it has no readable id. Odd
        other fields are dropped (see `Solve`)."""
        try:
            solve = Solve.model_validate(data)
        except ValueError:
            return None
        if not SOLVE_ID.fullmatch(solve.id) or not solve.id.startswith(CREDITS_PREFIX):
            return None
        return solve.with_guidance()

    def _solve(self, data: dict[str, Any]) -> Solve:
        solve = self._read_solve(data)
        if solve is None:
            raise APIError("unexpected_response", "NoneCap returned a solve without a readable id.", http_status=200)
        return solve

    # -- endpoints -------------------------------------------------------------------

    async def create_solve(self, body: dict[str, Any], *, wait: int = 0, deadline: float | None = None) -> Solve:
        """POST /v1/solves (?wait), holding one of the local solve slots (see `slots`).

        `deadline` (monotonic) bounds the whole call: waiting for a slot, the long-poll and
        retries. If the caller is cancelled, the solve this call created (known by id, or
        found unambiguously after a lost answer) is cancelled upstream, so its credit is
        refunded rather than spent.
        """
        key = await self._key_provider()
        page = (body["type"], body["sitekey"], body["url"])
        call = _Create(body=body, page=page, account=fingerprint(str(self._http.base_url), key.reveal()), page_key=fingerprint(*page))
        try:
            await self._gate.take(
                lambda limit: self._record_intent(call, limit),
                current_deadline(None if deadline is None else max(deadline, time.monotonic() + SLOT_WAIT_FLOOR_SECONDS)),
                lambda until: self._refresh_slots(call.account, until),
            )
            return await self._create(call, wait, deadline)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(EXCHANGE_SECONDS):
                await self._abandon(call)
            raise
        finally:
            if call.started is not None and not call.maybe_created:  # certainly made nothing
                with anyio.CancelScope(shield=True):
                    try:
                        await self._store(self._creates.release, call.call_id)
                        self._gate.freed()
                    except ConfigurationError:
                        log.warning("could not release a create intent; it expires on its own")

    async def _refresh_slots(self, account: str, deadline: float | None) -> None:
        """Look again at the account's solves holding slots (free reads): finished ones free theirs."""
        with anyio.move_on_after(max(0.0, deadline - time.monotonic()) if deadline is not None else 10):
            for solve_id in await self._store(self._creates.running_ids, account):
                try:
                    await self.get_solve(solve_id)
                except (APIError, APIConnectionError) as exc:
                    log.info("could not look at %s while waiting for a slot (%s)", solve_id, exc.code)

    async def _store(self, operation: Callable[..., T], *args: Any) -> T:
        """One create-log operation in a worker thread; a failing state file is a clear error."""
        try:
            return await anyio.to_thread.run_sync(operation, *args)
        except store_errors() as exc:
            raise ConfigurationError(
                "local_state_error", f"Could not use the record of creates in flight ({type(exc).__name__})."
            ) from None

    async def _record_intent(self, call: _Create, limit: int) -> bool:
        """Write this call's intent, durably, before its first POST, if one of the account's
        `limit` slots is free (see `create_log`)."""
        first_sent = datetime.now(UTC)
        sent_local = first_sent.timestamp()
        sent_api = None if self._clock_skew is None else sent_local + self._clock_skew
        intent = Intent(call.call_id, call.account, call.page_key, sent_local, sent_api)
        if not await self._store(self._creates.record_intent, intent, limit):
            return False
        call.started, call.first_sent = time.monotonic(), first_sent
        return True

    async def _observe(self, solves: list[Solve]) -> None:
        """Finished solves free the slots they held (in any process's record)."""
        if finished := [solve.id for solve in solves if solve.is_terminal]:
            try:
                if await self._store(self._creates.finished, finished):
                    self._gate.freed()
            except ConfigurationError:
                log.warning("could not record finished solves; their slots free when their lease ends")

    async def _claim(self, call: _Create, solve: Solve) -> bool:
        """Record `solve` as this call's (holding its slot while it runs)."""
        call.solve_id = solve.id
        claimed = await self._store(partial(self._creates.claim, running=not solve.is_terminal), call.call_id, solve.id)
        if solve.is_terminal:
            self._gate.freed()
        return claimed

    async def _create(self, call: _Create, wait: int, deadline: float | None) -> Solve:
        """One create, long-polling in the POST itself (one request per solve) unless another
        create for the same page is open in any process: then POST without ?wait and
        long-poll with a GET, so each call learns its own id at once and a lost answer
        stays unambiguous."""
        until = deadline if deadline is not None else time.monotonic() + wait
        for _ in range(2):
            others = await self._store(self._creates.others_for_page, call.call_id, call.account, call.page_key)
            long_poll = _seconds_left(until) > 0 and not others
            call.maybe_created = True
            try:
                data = await self._request(
                    "POST", "/v1/solves", lambda client, wait: client.solves.create(**call.body, wait=wait),
                    long_poll_until=until if long_poll else None, deadline=until,
                )
            except (_MaybeSent, APIError) as exc:
                if isinstance(exc, APIError) and _nothing_created(exc):
                    call.maybe_created = False
                    raise
                log.warning("create outcome unknown (%s); reconciling before any re-send", getattr(exc, "code", exc))
                found = await self._find_created(call)
                if found is None:
                    call.maybe_created = False
                    continue  # it was never created: sending again cannot charge twice
                return await self._own(call, found, until)
            except APIConnectionError:
                call.maybe_created = False  # never left
                raise
            solve = self._read_solve(data)
            if solve is None:  # accepted (2xx), so a solve exists: find it, never send again
                log.warning("create answered without a readable solve id; reconciling, never re-sending")
                found = await self._find_created(call)
                if found is None:
                    raise OutcomeUnknownError(
                        "NoneCap accepted the create (a solve was probably made and charged) but its answer had no "
                        "readable solve id, and no new solve of this page could be matched to this call."
                    )
                return await self._own(call, found, until)
            if not await self._claim(call, solve):
                log.warning("%s, answered to this call, was already claimed by another; keeping it", solve.id)
            return await self._own(call, solve, until)
        raise OutcomeUnknownError("The create request failed twice without an answer and no new solve was found.")

    async def _own(self, call: _Create, solve: Solve, until: float) -> Solve:
        """The solve is this call's (claimed): wait on it for what is left of the wait. If
        that wait fails, the solve is still returned (pending, with guidance to poll): never
        lose its id."""
        remaining = _seconds_left(until)
        if solve.is_terminal or remaining < 1:
            return solve
        try:
            return await self.get_solve(solve.id, wait=remaining, deadline=until)
        except (APIError, APIConnectionError) as exc:
            log.warning("waiting on %s failed (%s); returning it as it was", solve.id, exc.code)
            return solve

    async def _find_created(self, call: _Create) -> Solve | None:
        """The solve a lost create made, if exactly one candidate can be it; claimed for this call.

        Candidates are unclaimed solves of the same page created since this call's first
        send (on the API's clock). Several candidates, or one that another open intent (any
        call, any process sharing the state dir) could have made, are ambiguous: nothing is
        adopted, cancelled or re-sent, and the candidates are named. The intents are read
        after each listing, so any intent they miss was written after the listing and cannot
        own what it showed.
        """
        try:
            for lookup in range(2):
                if lookup:
                    await anyio.sleep(scaled(0.5))  # time for a create still in flight to be listed
                listing, skipped = await self._listing(limit=20, type=call.body["type"])
                if skipped:
                    raise OutcomeUnknownError(f"{skipped} listed solve(s) could not be read, so the lost answer cannot be matched safely.")
                since = self._on_api_clock(call.first_sent or datetime.now(UTC))
                if listing.has_more and listing.data and _created_at(listing.data[-1]) >= since:
                    raise OutcomeUnknownError("More solves were created since this call's first send than one listing shows.")
                candidates = [
                    solve for solve in listing.data
                    if (solve.type, solve.sitekey, solve.url) == call.page and _created_at(solve) >= since
                ]
                claimed = await self._store(self._creates.claimed_ids, [solve.id for solve in candidates])
                candidates = [solve for solve in candidates if solve.id not in claimed]
                others = await self._store(self._creates.others_for_page, call.call_id, call.account, call.page_key)
                if len(candidates) > 1 or any(self._could_own(other, solve) for other in others for solve in candidates):
                    ids = ", ".join(solve.id for solve in candidates)
                    raise OutcomeUnknownError(f"Other creates of this page may have made these new solves, so none is taken as this call's: {ids}.")
                if candidates:
                    if await self._claim(call, candidates[0]):
                        return candidates[0]
                    raise OutcomeUnknownError(f"The only candidate, {candidates[0].id}, was just claimed by another call.")
        except (APIError, APIConnectionError) as exc:
            raise OutcomeUnknownError(f"Could not check whether the create went through ({exc.code}).") from exc
        return None

    def _could_own(self, other: Intent, solve: Solve) -> bool:
        """Whether another call's open intent could have made this (dated) solve: yes unless
        the solve is older than that call's first send, on the API's clock."""
        if other.sent_api is not None:
            since = datetime.fromtimestamp(other.sent_api, UTC) - KNOWN_SKEW_SLACK
        else:  # written before its process knew the API's clock: same machine, so ours converts it
            since = self._on_api_clock(datetime.fromtimestamp(other.sent_local, UTC))
        return _created_at(solve) >= since

    def _on_api_clock(self, moment: datetime) -> datetime:
        """A local time on the API's clock (learned from its Date headers, including the
        listing just made), minus the slack that clock's 1 s resolution needs."""
        if self._clock_skew is None:
            return moment - UNKNOWN_SKEW_WINDOW
        return moment + timedelta(seconds=self._clock_skew) - KNOWN_SKEW_SLACK

    async def _abandon(self, call: _Create) -> None:
        """Best effort: cancel (and so refund) what an abandoned call created, and nothing else."""
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
        except NoneCapError as exc:
            log.warning("could not cancel an abandoned solve (%s)", exc.code)

    async def get_solve(self, solve_id: str, *, wait: int = 0, deadline: float | None = None) -> Solve:
        """GET /v1/solves/{id} (?wait long-poll); 200 and 202 both carry the solve."""
        path = f"/v1/solves/{check_solve_id(solve_id)}"
        until = time.monotonic() + wait if deadline is None else min(deadline, time.monotonic() + wait)
        data = await self._request(
            "GET", path, lambda client, wait: client.solves.retrieve(solve_id, wait=wait), long_poll_until=until, deadline=deadline
        )
        solve = self._solve(data)
        await self._observe([solve])
        return solve

    async def list_solves(
        self, *, limit: int = 20, starting_after: str | None = None, status: str | None = None, type: str | None = None
    ) -> SolveList:
        """GET /v1/solves, newest first; `next_starting_after` is the last id when has_more.
        Unreadable items are skipped (and logged), never a reason to lose the page."""
        listing, _ = await self._listing(limit=limit, starting_after=starting_after, status=status, type=type)
        return listing

    async def _listing(self, **filters: Any) -> tuple[SolveList, int]:
        """One page of solves and how many of its items could not be read."""
        data = await self._request("GET", "/v1/solves", lambda client, _: client.solves.list(**filters))
        items, has_more = data.get("data"), data.get("has_more")
        if not isinstance(items, list) or not isinstance(has_more, bool):
            wrong = "data is not a list" if not isinstance(items, list) else "has_more is not true or false"
            raise APIError("unexpected_response", f"NoneCap returned a solve listing this client cannot read: {wrong}.", http_status=200)
        read = [self._read_solve(item) for item in items]
        solves = [solve for solve in read if solve is not None]
        if len(solves) < len(read):
            log.warning("skipped %d unreadable solve(s) in a listing", len(read) - len(solves))
        await self._observe(solves)
        listing = SolveList(data=solves, has_more=has_more, next_starting_after=solves[-1].id if has_more and solves else None)
        return listing, len(read) - len(solves)

    async def cancel_solve(self, solve_id: str) -> Solve:
        """DELETE /v1/solves/{id}; a 409 after our own retried DELETE means the first one worked."""
        path = f"/v1/solves/{check_solve_id(solve_id)}"
        try:
            solve = self._solve(await self._request("DELETE", path, lambda client, _: client.solves.cancel(solve_id)))
            await self._observe([solve])
            return solve
        except ConflictError as exc:
            solve = await self.get_solve(solve_id)  # already finished: shown to the gate, frees its slot
            if exc.retried and solve.status == "cancelled":
                return solve
            raise

    async def me(self) -> Account:
        """GET /v1/me: the account and its credit balance."""
        return Account.model_validate(await self._request("GET", "/v1/me", lambda client, _: client.me()))

    async def report_feedback(self, solve_id: str, outcome: str, *, reason: str | None = None, context: str | None = None) -> Feedback:
        """POST /v1/solves/{id}/feedback: free, and idempotent per solve (a repeat restates or corrects
        the verdict), so an answer lost mid-request is retried like a read's (`idempotent`).
        `reason` and `context` are cut to what NoneCap keeps, as NoneCap itself would: a site's long
        rejection text is still worth reporting."""
        path = f"/v1/solves/{check_solve_id(solve_id)}/feedback"
        reason, context = reason and reason[:FEEDBACK_REASON_CHARS], context and context[:FEEDBACK_CONTEXT_CHARS]
        data = await self._request(
            "POST", path, lambda client, _: client.feedback.report(solve_id, outcome=outcome, reason=reason, context=context),
            idempotent=True,
        )
        try:
            return Feedback.model_validate(data)
        except ValueError:
            raise APIError("unexpected_response", "NoneCap returned feedback this client cannot read.", http_status=200) from None
