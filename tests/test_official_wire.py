"""The credits rail on NoneCap's official client (`nonecap`): what it sends, and where our rail
reads the answer itself because the client's reading would break a promise (see official_wire).
Real exchanges with the sandbox and the hostile server on 127.0.0.1; the end-to-end proof that
nothing was lost is the fault matrix and the tools' tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import nonecap
import pytest
from hostile import SOLVE_ID, Hostile

from nonecap_mcp.credentials import Secret
from nonecap_mcp.credits_api import CreditsAPI
from nonecap_mcp.errors import RateLimitError
from nonecap_mcp.retry import RetryPolicy
from nonecap_mcp.sandbox import SANDBOX_API_KEY, Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[Hostile]:
    with Hostile(request.param) as server:
        yield server


def rail(base_url: str) -> CreditsAPI:
    async def key() -> Secret:
        return Secret(SANDBOX_API_KEY)

    return CreditsAPI(base_url, key, retry=RetryPolicy(max_retries=0))


@pytest.mark.parametrize("hostile", ["bare"], indirect=True)
async def test_requests_are_the_official_clients_under_our_name(hostile: Hostile) -> None:
    api = rail(hostile.url)
    try:
        await api.get_solve(SOLVE_ID)
    finally:
        await api.aclose()
    head = hostile.heads[0].lower()
    assert "user-agent: nonecap-mcp/" in head and f"nonecap-python/{nonecap.__version__}" in head
    assert f"authorization: bearer {SANDBOX_API_KEY}".lower() in head


async def test_the_sandbox_answers_every_endpoint_through_it(sandbox: Sandbox) -> None:
    api = rail(sandbox.url)
    try:
        created = await api.create_solve({"type": "hcaptcha", "sitekey": "sandbox-solve-200ms", "url": "https://a.example/"}, wait=5)
        listed = await api.list_solves(limit=5)
        account = await api.me()
    finally:
        await api.aclose()
    assert created.status == "solved" and created.token and created.id in [solve.id for solve in listed.data]
    assert account.credits_balance is not None and account.plan is not None


@pytest.mark.parametrize("hostile", ["bare"], indirect=True)
async def test_a_created_solve_the_official_parser_refuses_is_kept(hostile: Hostile) -> None:
    """nonecap's Solve parser raises KeyError without `type` (the body is lost with it); the
    rail reads the captured answer itself, so the created solve's id is never dropped."""
    with pytest.raises(KeyError):
        nonecap.Solve._from_dict({"id": SOLVE_ID, "status": "solving"})
    api = rail(hostile.url)
    try:
        solve = await api.create_solve({"type": "hcaptcha", "sitekey": "k", "url": "https://a.example/"})
    finally:
        await api.aclose()
    assert solve.id == SOLVE_ID and solve.status == "solving" and solve.guidance is not None
    assert hostile.posts("/v1/solves") == 1


@pytest.mark.parametrize("hostile", ["dated"], indirect=True)
async def test_request_id_and_an_http_date_retry_after_come_from_the_headers(hostile: Hostile) -> None:
    """nonecap reads X-Request-Id (or the body's) and digits-only Retry-After; the API sends
    Request-Id and may send an HTTP date."""
    api = rail(hostile.url)
    started = time.monotonic()
    try:
        with pytest.raises(RateLimitError) as raised:
            await api.me()
    finally:
        await api.aclose()
    assert raised.value.request_id == "req_hostile"
    assert raised.value.retry_after is not None and 25 <= raised.value.retry_after <= 31
    assert time.monotonic() - started < 5  # longer than we hold a call: reported, not slept
