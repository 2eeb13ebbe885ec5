"""The offline emulator of the NoneCap v1 API, exercised over real HTTP with httpx."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import cut_in_flight, scaled

from nonecap_mcp.sandbox import LOCKED_API_KEY, SANDBOX_API_KEY, TEST_SITEKEYS, RecordedRequest, Sandbox
from nonecap_mcp.sandbox.outcomes import FAILURE_MESSAGES, NOT_RETRYABLE, Plan, plan_for
from nonecap_mcp.sandbox.solves import UlidGenerator

SOLVE_FIELDS = {
    "id", "object", "type", "status", "sitekey", "url", "token", "error", "credits_charged",
    "created_at", "started_at", "finished_at", "queue_ms", "resolve_ms", "livemode",
    "resp_key", "user_agent", "warnings",
}  # fmt: skip
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SOLVE_ID = re.compile(r"solve_[0-9A-HJKMNP-TV-Z]{26}")
OTHER_KEY = "nc_test_" + "o" * 32


def ms(real: int) -> int:
    """One of the sandbox's own durations (milliseconds), in the suite's time scale; a test
    sitekey's explicit N is taken as given."""
    return round(scaled(real))



def open_client(url: str, api_key: str | None = None) -> httpx.Client:
    """Plain HTTP on loopback: verify=False skips loading a CA bundle (~40 ms per client)."""
    headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
    return httpx.Client(base_url=url, headers=headers, verify=False, timeout=10)


@pytest.fixture(scope="module")
def shared_clients(_sandbox_server: Sandbox) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients on conftest's shared sandbox (its `sandbox` fixture resets it before each test)."""
    url = _sandbox_server.url
    with open_client(url, _sandbox_server.api_key) as authed, open_client(url) as anonymous:
        yield authed, anonymous


@pytest.fixture
def client(sandbox: Sandbox, shared_clients: tuple[httpx.Client, httpx.Client]) -> httpx.Client:
    """Authenticated as SANDBOX_API_KEY, on a freshly reset sandbox."""
    return shared_clients[0]


@pytest.fixture
def anon(sandbox: Sandbox, shared_clients: tuple[httpx.Client, httpx.Client]) -> httpx.Client:
    """No Authorization header: for control endpoints and auth tests."""
    return shared_clients[1]


def solve_body(sitekey: str = "sandbox-solve-100ms", **extra: object) -> dict[str, object]:
    return {"type": "hcaptcha", "sitekey": sitekey, "url": "https://example.com/login", **extra}


def create(
    client: httpx.Client, sitekey: str = "sandbox-solve-100ms", wait: int | None = None, **extra: object
) -> httpx.Response:
    params = {} if wait is None else {"wait": wait}
    return client.post("/v1/solves", json=solve_body(sitekey, **extra), params=params)


def balance(client: httpx.Client) -> int:
    return client.get("/v1/me").json()["credits_balance"]


def error_of(response: httpx.Response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    assert set(error) == {"code", "message", "param"}
    return response.status_code, error["code"], error["param"]


# -- auth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "Missing API key"),
        ("Basic abc", "Missing API key"),
        ("Bearer nc_test_short", "Malformed API key"),
        ("Bearer " + "nc_test_" + "u" * 32, "Unknown or revoked API key."),
        ("Bearer " + "nc_live_" + "u" * 32, "Live keys (nc_live_) do not work in the sandbox"),
    ],
)
def test_bad_credentials_are_401_and_never_echoed(anon: httpx.Client, authorization: str | None, fragment: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = anon.get("/v1/me", headers=headers)
    assert error_of(response) == (401, "unauthorized", None)
    assert fragment in response.json()["error"]["message"]
    assert "u" * 32 not in response.text


def test_locked_account_is_403_on_every_endpoint(anon: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {LOCKED_API_KEY}"}
    assert error_of(anon.get("/v1/me", headers=headers)) == (403, "account_locked", None)
    assert error_of(anon.post("/v1/solves", headers=headers, json=solve_body())) == (403, "account_locked", None)
    assert error_of(anon.get("/v1/solves", headers=headers)) == (403, "account_locked", None)


def test_keys_are_obviously_test_keys() -> None:
    assert re.fullmatch(r"nc_test_[A-Za-z0-9_-]{32}", SANDBOX_API_KEY)
    assert re.fullmatch(r"nc_test_[A-Za-z0-9_-]{32}", LOCKED_API_KEY)


# -- create, wait, retrieve ---------------------------------------------------------


def test_create_is_202_pending_then_wait_gives_200_solved(client: httpx.Client) -> None:
    created = create(client, "sandbox-solve-300ms")
    assert created.status_code == 202
    solve = created.json()
    assert set(solve) == SOLVE_FIELDS
    assert SOLVE_ID.fullmatch(solve["id"])
    assert (solve["object"], solve["type"], solve["status"]) == ("solve", "hcaptcha", "pending")
    assert (solve["sitekey"], solve["url"]) == ("sandbox-solve-300ms", "https://example.com/login")
    assert [
        solve[k] for k in ("token", "error", "credits_charged", "started_at", "finished_at", "queue_ms", "resolve_ms")
    ] == [None] * 7
    assert RFC3339_MS.fullmatch(solve["created_at"])
    assert solve["livemode"] is False

    done = client.get(f"/v1/solves/{solve['id']}", params={"wait": 5})
    assert done.status_code == 200
    final = done.json()
    assert final["status"] == "solved"
    assert final["token"].startswith("P1_SANDBOX_") and final["token"].endswith("_NOT_A_REAL_HCAPTCHA_TOKEN")
    assert (final["error"], final["credits_charged"], final["queue_ms"], final["resolve_ms"]) == (None, 1, 60, 240)
    assert RFC3339_MS.fullmatch(final["started_at"]) and RFC3339_MS.fullmatch(final["finished_at"])
    assert final["created_at"] == solve["created_at"]
    assert client.get(f"/v1/solves/{solve['id']}").json()["token"] == final["token"]


def test_post_with_wait_returns_the_terminal_solve(client: httpx.Client) -> None:
    response = create(client, "sandbox-solve-200ms", wait=5)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["credits_charged"]) == ("solved", 1)


def test_wait_that_runs_out_is_202_still_solving(client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-hang").json()["id"]
    started = time.monotonic()
    response = client.get(f"/v1/solves/{solve_id}", params={"wait": 1})
    assert 0.95 <= time.monotonic() - started < 2
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["queue_ms"], body["resolve_ms"], body["credits_charged"]) == (
        "solving",
        ms(200),
        None,
        None,
    )


def test_status_follows_the_schedule(client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-solve-600ms").json()["id"]
    time.sleep(0.25)
    middle = client.get(f"/v1/solves/{solve_id}")
    assert (middle.status_code, middle.json()["status"], middle.json()["queue_ms"]) == (202, "solving", 120)


def test_ids_are_strictly_increasing_ulids_even_in_one_millisecond() -> None:
    generator = UlidGenerator()
    ids = [generator.new(1_700_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", value) for value in ids)
    assert generator.new(1) > ids[-1]  # a clock stepping back never reorders


# -- credits ------------------------------------------------------------------------


def test_debit_at_submit_and_refund_on_failure(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_balance(3)
    solve_id = create(client, "sandbox-fail-token_not_granted-200ms").json()["id"]
    assert balance(client) == 2
    final = client.get(f"/v1/solves/{solve_id}", params={"wait": 5}).json()
    assert (final["status"], final["credits_charged"], final["token"]) == ("failed", 0, None)
    assert balance(client) == 3


def test_solved_keeps_the_credit(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_balance(3)
    create(client, "sandbox-solve-0ms")
    assert balance(client) == 2


def test_refund_shows_in_balance_without_anyone_reading_the_solve(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_balance(1)
    create(client, "sandbox-expire-100ms")
    assert balance(client) == 0
    time.sleep(0.15)
    assert balance(client) == 1


def test_zero_balance_is_402_with_the_seed_message_and_creates_nothing(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_balance(0)
    response = create(client)
    assert error_of(response) == (402, "insufficient_credits", None)
    assert response.json()["error"]["message"] == (
        "Your account has 0 credits remaining. Top up at https://dashboard.nonecap.com/billing."
    )
    assert client.get("/v1/solves").json()["data"] == []


def test_sixth_solve_in_flight_is_429_until_one_completes(client: httpx.Client) -> None:
    ids = [create(client, "sandbox-hang").json()["id"] for _ in range(5)]
    refused = create(client, "sandbox-hang")
    assert error_of(refused) == (429, "concurrency_limit_exceeded", None)
    assert balance(client) == 95
    assert client.delete(f"/v1/solves/{ids[0]}").status_code == 200
    assert create(client, "sandbox-solve-0ms").status_code == 200  # terminal at once: 200 even without wait
    assert balance(client) == 95  # one refunded by the cancel, one debited


def test_max_in_flight_and_credits_are_configurable() -> None:
    with Sandbox(credits=2, max_in_flight=1) as small, open_client(small.url, small.api_key) as http:
        assert create(http, "sandbox-hang").status_code == 202
        assert error_of(create(http, "sandbox-hang"))[1] == "concurrency_limit_exceeded"
        assert balance(http) == 1


# -- outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(FAILURE_MESSAGES))
def test_every_failure_sitekey(client: httpx.Client, code: str) -> None:
    response = create(client, f"sandbox-fail-{code}-50ms", wait=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == {
        "code": code, "message": FAILURE_MESSAGES[code], "reason": None, "retryable": code not in NOT_RETRYABLE,
    }  # fmt: skip
    assert (body["token"], body["credits_charged"], body["queue_ms"], body["resolve_ms"]) == (None, 0, 10, 40)
    assert (body["resp_key"], body["user_agent"], body["warnings"]) == (None, None, [])


def test_failure_messages_are_the_seeds() -> None:
    assert FAILURE_MESSAGES["proxy_error"] == (
        "The supplied proxy failed to connect or auth, or its IP was refused by hCaptcha. Fix or swap the proxy."
    )
    assert set(FAILURE_MESSAGES) == {
        "challenge_not_loaded", "token_not_granted", "challenge_expired", "challenge_errored",
        "proxy_error", "target_unreachable", "vision_error",
        "internal_error", "unsolvable_variant", "capacity_exhausted",  # the live API's, past the seed
    }  # fmt: skip


def test_expired_while_queued_was_never_picked_up(client: httpx.Client) -> None:
    body = create(client, "sandbox-expire-200ms", wait=5).json()
    assert body["status"] == "expired"
    assert body["error"] == {
        "code": "expired",
        "message": "Solve exceeded its time budget before producing a token (never billed).",
        "reason": None,
        "retryable": True,
    }
    assert (body["started_at"], body["resolve_ms"], body["queue_ms"], body["credits_charged"]) == (None, None, 200, 0)
    assert RFC3339_MS.fullmatch(body["finished_at"])


def test_sitekey_plans() -> None:
    assert plan_for("0x4AAAA-real-sitekey") == Plan("solved", ms(300), ms(1500))
    assert plan_for("sandbox-solve-2s") == Plan("solved", 400, 2000)
    assert plan_for("sandbox-solve-999s") == Plan("solved", 18_000, 90_000)
    assert plan_for("sandbox-fail-vision_error") == Plan("failed", ms(60), ms(300), "vision_error")
    assert plan_for("sandbox-expire") == Plan("expired", None, ms(2000), "expired")
    assert plan_for("sandbox-expire-1000s") == Plan("expired", None, ms(120_000), "expired")
    assert plan_for("sandbox-hang") == Plan("expired", ms(200), ms(120_000), "expired")
    assert "sandbox-hang" in TEST_SITEKEYS and "<any other sitekey>" in TEST_SITEKEYS
    # The vendors' own test keys: passing ones solve like any sitekey, Turnstile's blocking ones fail.
    for passing in ("10000000-ffff-ffff-ffff-000000000001", "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI", "3x00000000000000000000FF"):
        assert plan_for(passing) == Plan("solved", ms(300), ms(1500))
    assert plan_for("2x00000000000000000000BB") == Plan("failed", ms(60), ms(300), "token_not_granted")


@pytest.mark.parametrize("sitekey", ["sandbox-fail-proxy_eror", "sandbox-solve-3", "sandbox-hang-1s"])
def test_mistyped_sandbox_sitekey_is_422(client: httpx.Client, sitekey: str) -> None:
    assert error_of(create(client, sitekey)) == (422, "validation_error", "sitekey")


# -- list and pagination ------------------------------------------------------------


def test_pagination_newest_first_with_has_more_and_filters(client: httpx.Client) -> None:
    sitekeys = [
        "sandbox-solve-0ms",
        "sandbox-fail-vision_error-0ms",
        "sandbox-solve-0ms",
        "sandbox-fail-proxy_error-0ms",
        "sandbox-solve-0ms",
    ]
    ids = []
    for index, sitekey in enumerate(sitekeys):
        extra = {"type": "hcaptcha_enterprise", "rqdata": "rq"} if index % 2 else {}
        ids.append(create(client, sitekey, **extra).json()["id"])
    assert ids == sorted(ids)

    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"starting_after": cursor} if cursor else {})
        page = client.get("/v1/solves", params=params).json()
        assert (page["object"], page["url"]) == ("list", "/v1/solves")
        pages.append(([solve["id"] for solve in page["data"]], page["has_more"]))
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    newest_first = ids[::-1]
    assert pages == [(newest_first[0:2], True), (newest_first[2:4], True), (newest_first[4:], False)]

    assert [s["id"] for s in client.get("/v1/solves", params={"status": "failed"}).json()["data"]] == [ids[3], ids[1]]
    enterprise = client.get("/v1/solves", params={"type": "hcaptcha_enterprise", "limit": 1}).json()
    assert ([s["id"] for s in enterprise["data"]], enterprise["has_more"]) == ([ids[3]], True)
    assert client.get("/v1/solves", params={"status": "solving"}).json() == {
        "object": "list",
        "url": "/v1/solves",
        "data": [],
        "has_more": False,
    }
    assert len(client.get("/v1/solves").json()["data"]) == 5  # default limit 20


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"type": "recaptcha_v2"}, "type"),
        ({"starting_after": "nope"}, "starting_after"),
        ({"starting_after": "solve_01HQF7K3JKWZX0000000000000"}, "starting_after"),
    ],
)
def test_list_validation(client: httpx.Client, params: dict[str, object], param: str) -> None:
    assert error_of(client.get("/v1/solves", params=params)) == (422, "validation_error", param)


def test_other_accounts_solves_are_invisible(sandbox: Sandbox, client: httpx.Client) -> None:
    solve_id = create(client).json()["id"]
    sandbox.add_account(OTHER_KEY, credits=5)
    with open_client(sandbox.url, OTHER_KEY) as other:
        assert error_of(other.get(f"/v1/solves/{solve_id}")) == (404, "not_found", None)
        assert error_of(other.delete(f"/v1/solves/{solve_id}")) == (404, "not_found", None)
        assert other.get("/v1/solves").json()["data"] == []
        assert error_of(other.get("/v1/solves", params={"starting_after": solve_id}))[2] == "starting_after"
        assert balance(other) == 5


# -- cancel -------------------------------------------------------------------------


def test_cancel_refunds_then_second_cancel_is_409(client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-hang").json()["id"]
    time.sleep(scaled(0.25))  # picked up at 200 ms
    assert balance(client) == 99
    cancelled = client.delete(f"/v1/solves/{solve_id}")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert (body["status"], body["credits_charged"], body["token"]) == ("cancelled", 0, None)
    assert body["error"] == {"code": "cancelled", "message": "The caller cancelled the job.", "reason": None,
                             "retryable": True}  # fmt: skip
    assert body["queue_ms"] == ms(200) and body["resolve_ms"] >= ms(50) and body["started_at"] is not None
    assert balance(client) == 100
    assert error_of(client.delete(f"/v1/solves/{solve_id}")) == (409, "conflict", None)
    assert client.get(f"/v1/solves/{solve_id}").status_code == 200


def test_cancel_while_queued_counts_the_whole_wait_as_queue(client: httpx.Client) -> None:
    body = client.delete(f"/v1/solves/{create(client, 'sandbox-expire').json()['id']}").json()
    assert (body["status"], body["started_at"], body["resolve_ms"]) == ("cancelled", None, None)
    assert body["queue_ms"] is not None and body["queue_ms"] < 1000


def test_cancel_of_a_solved_solve_is_409(client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-solve-0ms").json()["id"]
    assert error_of(client.delete(f"/v1/solves/{solve_id}")) == (409, "conflict", None)


def test_cancel_wakes_a_waiting_long_poll(sandbox: Sandbox, client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-hang").json()["id"]
    results: list[httpx.Response] = []

    def poll() -> None:
        with open_client(sandbox.url, sandbox.api_key) as own:
            results.append(own.get(f"/v1/solves/{solve_id}", params={"wait": 30}))

    waiter = threading.Thread(target=poll)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.2)
    client.delete(f"/v1/solves/{solve_id}")
    waiter.join(5)
    assert time.monotonic() - started < 2
    assert (results[0].status_code, results[0].json()["status"]) == (200, "cancelled")


# -- not found, methods ---------------------------------------------------------------


def test_unknown_ids_and_paths_are_404_and_wrong_methods_405(client: httpx.Client) -> None:
    assert error_of(client.get("/v1/solves/solve_01HQF7K3JKWZX0000000000000")) == (404, "not_found", None)
    assert error_of(client.delete("/v1/solves/whatever")) == (404, "not_found", None)
    assert error_of(client.get("/v2/solves")) == (404, "not_found", None)
    wrong = client.put("/v1/solves")
    assert error_of(wrong) == (405, "invalid_request", None)
    assert wrong.headers["allow"] == "GET, POST"


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param"),
    [(b"{not json", None), (b"[1, 2]", None), (b"", None), (b'{"type": NaN}', None)],
)
def test_malformed_body_is_400(client: httpx.Client, content: bytes, param: str | None) -> None:
    response = client.post("/v1/solves", content=content, headers={"Content-Type": "application/json"})
    assert error_of(response) == (400, "invalid_request", param)


@pytest.mark.parametrize("field", ["type", "sitekey", "url"])
def test_missing_required_field_is_400_naming_it(client: httpx.Client, field: str) -> None:
    body = solve_body()
    del body[field]
    assert error_of(client.post("/v1/solves", json=body)) == (400, "invalid_request", field)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"type": "captcha"}, "type"),
        ({"type": "cloudflare_turnstile"}, "type"),
        ({"sitekey": 42}, "sitekey"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "example.com"}, "url"),
        ({"type": "hcaptcha_enterprise", "rqdata": ""}, "rqdata"),
        ({"user_agent": 5}, "user_agent"),
        ({"webhook_url": "mailto:me@example.com"}, "webhook_url"),
        ({"proxy": "ftp://user:s3cr3t@proxy.example:8080"}, "proxy"),
        ({"proxy": "http://user:s3cr3t@proxy.example"}, "proxy"),
        ({"proxy": "http://:s3cr3t@proxy.example:8080"}, "proxy"),
        ({"proxy": "http://user:s3cr3t@proxy.example:99999"}, "proxy"),
        ({"proxy": {"host": "proxy.example", "port": 0, "password": "s3cr3t", "username": "u"}}, "proxy"),
        ({"proxy": {"host": "proxy.example", "port": 8080, "passwd": "s3cr3t"}}, "proxy"),
        ({"proxy": {"host": "proxy.example", "port": 8080, "scheme": "ftp"}}, "proxy"),
        ({"proxy": 8080}, "proxy"),
    ],
)
def test_bad_values_are_422_naming_the_field(client: httpx.Client, changes: dict[str, object], param: str) -> None:
    response = client.post("/v1/solves", json=solve_body() | changes)
    assert error_of(response) == (422, "validation_error", param)
    assert "s3cr3t" not in response.text
    assert client.get("/v1/solves").json()["data"] == []


def test_reserved_type_says_so(client: httpx.Client) -> None:
    message = client.post("/v1/solves", json=solve_body(type="funcaptcha")).json()["error"]["message"]
    assert "reserved" in message and "not yet supported" in message


@pytest.mark.parametrize("wait", ["0", "91", "abc", "1.5", ""])
def test_bad_wait_is_422(client: httpx.Client, wait: str) -> None:
    assert error_of(client.post(f"/v1/solves?wait={wait}", json=solve_body())) == (422, "validation_error", "wait")
    assert error_of(client.get(f"/v1/solves/solve_01HQF7K3JKWZX0000000000000?wait={wait}")) == (
        422,
        "validation_error",
        "wait",
    )


def test_valid_proxies_are_accepted_but_never_echoed(client: httpx.Client) -> None:
    proxies: list[object] = [
        "socks5://user:s3cr3t@10.0.0.1:1080",
        "http://proxy.example:3128",
        {"host": "proxy.example", "port": 8080, "scheme": "https", "username": "u", "password": "s3cr3t"},
    ]
    for proxy in proxies:
        response = create(
            client, "sandbox-solve-0ms", proxy=proxy, user_agent="Mozilla/5.0", webhook_url="https://hooks.example/x"
        )
        assert response.status_code == 200
        assert "s3cr3t" not in response.text and "proxy" not in response.json()
    enterprise = create(client, "sandbox-solve-0ms", type="hcaptcha_enterprise", rqdata="abc")
    assert enterprise.json()["type"] == "hcaptcha_enterprise"


# -- faults -------------------------------------------------------------------------


def test_status_fault_with_retry_after_creates_nothing_and_is_consumed(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=503, code="pool_exhausted", times=2)
    for _ in range(2):
        response = create(client)
        assert error_of(response) == (503, "pool_exhausted", None)
        assert response.headers["retry-after"] == "1"
    assert balance(client) == 100 and client.get("/v1/solves").json()["data"] == []
    assert create(client).status_code == 202


def test_status_fault_from_code_or_status_alone(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", code="rate_limited", retry_after=7)
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", status=500)
    limited = client.get("/v1/me")
    assert error_of(limited) == (429, "rate_limited", None) and limited.headers["retry-after"] == "7"
    broken = client.get("/v1/me")
    assert error_of(broken) == (500, "internal_error", None) and "retry-after" not in broken.headers
    assert client.get("/v1/me").status_code == 200


def test_drop_before_creates_nothing(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        create(client)
    assert client.get("/v1/solves").json()["data"] == []
    assert balance(client) == 100


def test_drop_after_creates_and_charges_but_loses_the_answer(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after")
    with pytest.raises(httpx.RemoteProtocolError):
        create(client, "sandbox-solve-100ms", wait=5)
    listed = client.get("/v1/solves").json()["data"]
    assert [solve["status"] for solve in listed] == ["solved"]  # ?wait ran to the end before the drop
    assert balance(client) == 99


def test_delay_fault_and_prefix_match(sandbox: Sandbox, client: httpx.Client) -> None:
    solve_id = create(client).json()["id"]
    sandbox.inject_fault(method="GET", path="/v1/solves/*", action="delay", seconds=0.3)
    assert client.get("/v1/solves").status_code == 200  # the prefix needs the slash
    started = time.monotonic()
    assert client.get(f"/v1/solves/{solve_id}").status_code in (200, 202)
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"action": "explode"}, "action"),
        ({"action": "status"}, "status"),
        ({"action": "status", "status": 200}, "status"),
        ({"action": "status", "code": "teapot"}, "status"),
        ({"action": "delay"}, "seconds"),
        ({"action": "drop_before", "times": 0}, "times"),
        ({"action": "drop_before", "path": "/_sandbox/reset"}, "path"),
        ({"action": "drop_before", "path": "v1/me"}, "path"),
    ],
)
def test_bad_fault_arguments_raise_value_error(sandbox: Sandbox, kwargs: dict[str, object], param: str) -> None:
    arguments: dict[str, object] = {"method": "GET", "path": "/v1/me"} | kwargs
    with pytest.raises(ValueError) as raised:
        sandbox.inject_fault(**arguments)  # type: ignore[arg-type]
    assert raised.value.param == param  # type: ignore[attr-defined]


# -- request log --------------------------------------------------------------------


def test_request_log_records_api_traffic_only(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="drop_before")
    create(client, wait=3)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/me")
    client.get("/_sandbox/requests")
    client.get("/v1/solves", params={"limit": 3, "status": "solved"})
    log = sandbox.requests
    assert [(r.method, r.path, r.query, r.status) for r in log] == [
        ("POST", "/v1/solves", {"wait": "3"}, 200),
        ("GET", "/v1/me", {}, None),
        ("GET", "/v1/solves", {"limit": "3", "status": "solved"}, 200),
    ]
    assert all(isinstance(r, RecordedRequest) and r.time > 0 for r in log)
    assert log[0].time <= log[1].time <= log[2].time
    sandbox.clear_requests()
    assert sandbox.requests == []


# -- control endpoints over HTTP ----------------------------------------------------


def test_control_endpoints_over_http(sandbox: Sandbox, client: httpx.Client, anon: httpx.Client) -> None:
    account = anon.post("/_sandbox/accounts", json={"api_key": OTHER_KEY, "credits": 1, "email": "qa@example.test"})
    assert account.status_code == 200
    assert (account.json()["credits_balance"], account.json()["email"]) == (1, "qa@example.test")
    with open_client(sandbox.url, OTHER_KEY) as other:
        assert create(other, "sandbox-solve-0ms").status_code == 200
        assert error_of(create(other))[1] == "insufficient_credits"
        anon.post("/_sandbox/accounts", json={"api_key": OTHER_KEY, "credits": 0, "locked": True})
        assert error_of(other.get("/v1/me"))[1] == "account_locked"

    fault = anon.post(
        "/_sandbox/faults", json={"method": "get", "path": "/v1/me", "action": "status", "code": "pool_exhausted"}
    )
    assert fault.status_code == 200
    assert fault.json() == {
        "object": "fault", "method": "GET", "path": "/v1/me", "action": "status", "times": 1,
        "status": 503, "code": "pool_exhausted", "retry_after": 1, "seconds": None,
    }  # fmt: skip
    assert client.get("/v1/me").status_code == 503

    logged = anon.get("/_sandbox/requests").json()["data"]
    assert [(r["method"], r["path"], r["status"]) for r in logged][-1] == ("GET", "/v1/me", 503)
    assert set(logged[0]) == {"method", "path", "query", "status", "time"}
    assert anon.delete("/_sandbox/requests").status_code == 200
    assert sandbox.requests == []

    bad = anon.post("/_sandbox/faults", json={"method": "GET", "path": "/v1/me", "action": "status", "status": "503"})
    assert error_of(bad) == (422, "validation_error", "status")
    assert error_of(anon.post("/_sandbox/faults", json={"path": "/v1/me", "actoin": "x"}))[2] == "actoin"
    assert error_of(anon.post("/_sandbox/accounts", json={"api_key": "nc_live_" + "x" * 32}))[2] == "api_key"
    sitekeys = anon.get("/_sandbox/sitekeys").json()["data"]
    assert {row["sitekey"] for row in sitekeys} == set(TEST_SITEKEYS)

    create(client, "sandbox-hang")
    assert anon.post("/_sandbox/reset").json() == {"object": "sandbox", "reset": True}
    assert client.get("/v1/solves").json()["data"] == [] and balance(client) == 100
    assert error_of(anon.get("/v1/me", headers={"Authorization": f"Bearer {OTHER_KEY}"}))[1] == "unauthorized"


# -- transport --------------------------------------------------------------------------


def test_every_response_has_request_id_json_and_length(client: httpx.Client) -> None:
    for response in (client.get("/v1/me"), client.get("/nowhere"), create(client), client.put("/v1/me")):
        assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["request-id"])
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
    ids = {client.get("/v1/me").headers["request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_keep_alive_serves_several_requests_on_one_connection(sandbox: Sandbox) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        headers = {"Authorization": f"Bearer {sandbox.api_key}", "Content-Type": "application/json"}
        connection.request("POST", "/v1/solves", body=b'{"type": "hcaptcha"', headers=headers)
        first = connection.getresponse()
        assert (first.status, first.read()[:9]) == (400, b'{"error":')
        sock = connection.sock
        connection.request("GET", "/v1/me", headers=headers)
        second = connection.getresponse()
        assert second.status == 200 and b'"credits_balance":100' in second.read()
        assert connection.sock is sock
    finally:
        connection.close()


def test_garbage_request_line_still_gets_the_envelope(sandbox: Sandbox) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("BREW", "/v1/me")
        response = connection.getresponse()
        assert response.status == 501 and response.getheader("Content-Type") == "application/json"
        assert b'"code":"invalid_request"' in response.read()
    finally:
        connection.close()


def test_start_is_idempotent_and_stop_closes_the_port() -> None:
    sandbox = Sandbox()
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    assert sandbox.start() is sandbox.start()
    url = sandbox.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    with open_client(url, SANDBOX_API_KEY) as http:
        assert http.get("/v1/me").status_code == 200  # leaves a keep-alive connection open
        sandbox.stop()
        sandbox.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/v1/me")


def test_stop_releases_long_polls_promptly() -> None:
    sandbox = Sandbox().start()
    with open_client(sandbox.url, SANDBOX_API_KEY) as http:
        solve_id = http.post("/v1/solves", json=solve_body("sandbox-hang")).json()["id"]
        got = cut_in_flight(lambda: http.get(f"/v1/solves/{solve_id}", params={"wait": 60}), sandbox.stop)
    assert got == 202 or issubclass(got, httpx.TransportError)  # type: ignore[arg-type]


def test_binding_does_no_reverse_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("the sandbox must not resolve names")

    monkeypatch.setattr(socket, "getfqdn", refuse)
    monkeypatch.setattr(socket, "gethostbyaddr", refuse)
    with Sandbox() as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")


# -- the live API past the seed (as the official `nonecap` client documents it) ----------


def test_live_sitekey_plans() -> None:
    assert plan_for("sandbox-fail-proxy_error-proxy_tls-1s") == Plan("failed", 200, 1000, "proxy_error", "proxy_tls")
    assert plan_for("sandbox-fail-capacity_exhausted") == Plan("failed", ms(60), ms(300), "capacity_exhausted")
    assert plan_for("sandbox-warn-proxy_recommended") == Plan("solved", ms(300), ms(1500), warning="proxy_recommended")
    for typo in ("sandbox-fail-proxy_error-proxy_rejectd", "sandbox-warn-nope", "sandbox-refuse-teapot"):
        with pytest.raises(Exception, match="Unknown sandbox test sitekey"):
            plan_for(typo)


@pytest.mark.parametrize(
    ("code", "status", "retry_after"),
    [("sitekey_rate_limited", 429, "30"), ("proxy_unavailable", 429, "60"), ("rate_capped", 429, "10"),
     ("maintenance", 503, "30"), ("key_credit_limit_exceeded", 402, None)],
)  # fmt: skip
def test_refuse_sitekeys_create_nothing(client: httpx.Client, code: str, status: int, retry_after: str | None) -> None:
    response = create(client, f"sandbox-refuse-{code}")
    assert error_of(response) == (status, code, None)
    assert response.headers.get("retry-after") == retry_after
    assert client.get("/v1/solves").json()["data"] == [] and balance(client) == 100


def test_fault_codes_of_the_live_api(client: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", code="maintenance")
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", status=429)
    assert error_of(client.get("/v1/me"))[:2] == (503, "maintenance")
    assert error_of(client.get("/v1/me"))[:2] == (429, "rate_limited")  # a bare 429 is still plain rate limiting


def test_413_and_415(client: httpx.Client) -> None:
    big = client.post("/v1/solves", content=b"{" + b" " * (1 << 20) + b"}", headers={"Content-Type": "application/json"})
    assert error_of(big)[:2] == (413, "payload_too_large")
    form = client.post("/v1/solves", content=b"type=hcaptcha", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert error_of(form)[:2] == (415, "unsupported_media_type")
    assert client.get("/v1/solves").json()["data"] == []


def test_enterprise_rqdata_is_optional(client: httpx.Client) -> None:
    assert create(client, "sandbox-solve-1s", type="hcaptcha_enterprise").status_code == 202


def test_live_solve_fields(client: httpx.Client) -> None:
    solved = create(client, "sandbox-warn-proxy_session_refused-0ms", wait=5, user_agent="UA/1").json()
    assert solved["resp_key"].startswith("E0_SANDBOX_") and solved["user_agent"] == "UA/1"
    assert [w["code"] for w in solved["warnings"]] == ["proxy_session_refused"]
    failed = create(client, "sandbox-fail-target_unreachable-target_egress_blocked-0ms", wait=5).json()
    assert failed["error"]["reason"] == "target_egress_blocked" and failed["error"]["retryable"] is False


def test_plan_counts_todays_solves_and_can_be_absent(client: httpx.Client, anon: httpx.Client) -> None:
    create(client, "sandbox-solve-0ms", wait=5)
    plan = client.get("/v1/me").json()["plan"]
    assert (plan["daily_solves"], plan["used_today"], plan["remaining_today"]) == (1000, 1, 999)
    assert plan["resets_at"].endswith("T00:00:00.000Z")
    anon.post("/_sandbox/accounts", json={"api_key": OTHER_KEY, "daily_solves": None})
    assert anon.get("/v1/me", headers={"Authorization": f"Bearer {OTHER_KEY}"}).json()["plan"] is None


def test_feedback_records_corrects_and_is_idempotent(client: httpx.Client) -> None:
    solve_id = create(client, "sandbox-solve-0ms", wait=5).json()["id"]
    path = f"/v1/solves/{solve_id}/feedback"
    first = client.post(path, json={"outcome": "accepted"})
    assert first.status_code == 200
    assert first.json() | {"created_at": "", "updated_at": ""} == {
        "object": "feedback", "solve_id": solve_id, "outcome": "accepted", "reason": None, "context": None,
        "reported_at": None, "report_count": 1, "created_at": "", "updated_at": "",
    }  # fmt: skip
    assert client.post(path, json={"outcome": "accepted"}).json()["report_count"] == 1
    long = client.post(path, json={"outcome": "rejected", "reason": "r" * 600, "context": "c" * 2100}).json()
    assert (long["outcome"], len(long["reason"]), len(long["context"]), long["report_count"]) == ("rejected", 512, 2000, 2)


def test_feedback_errors(client: httpx.Client, anon: httpx.Client) -> None:
    failed_id = create(client, "sandbox-fail-vision_error-0ms", wait=5).json()["id"]
    solved_id = create(client, "sandbox-solve-0ms", wait=5).json()["id"]
    assert error_of(anon.post(f"/v1/solves/{solved_id}/feedback", json={"outcome": "accepted"}))[:2] == (401, "unauthorized")
    assert error_of(client.post("/v1/solves/solve_nope/feedback", json={"outcome": "accepted"}))[:2] == (404, "not_found")
    assert error_of(client.post(f"/v1/solves/{failed_id}/feedback", json={"outcome": "accepted"}))[:2] == (404, "not_eligible")
    assert error_of(client.post(f"/v1/solves/{solved_id}/feedback", json={})) == (400, "invalid_request", "outcome")
    assert error_of(client.post(f"/v1/solves/{solved_id}/feedback", json={"outcome": "ok"})) == (422, "validation_error", "outcome")
    assert error_of(client.post(f"/v1/solves/{solved_id}/feedback", json={"outcome": "error", "reason": 5}))[2] == "reason"
    assert error_of(client.get(f"/v1/solves/{solved_id}/feedback"))[0] == 405


def test_feedback_batch_resolves_each_item(client: httpx.Client) -> None:
    solved_id = create(client, "sandbox-solve-0ms", wait=5).json()["id"]
    failed_id = create(client, "sandbox-fail-vision_error-0ms", wait=5).json()["id"]
    items = [
        {"solve_id": solved_id, "outcome": "accepted"},
        {"solve_id": solved_id, "outcome": "accepted"},
        {"solve_id": solved_id, "outcome": "rejected", "reason": "invalid-response"},
        {"solve_id": failed_id, "outcome": "unused"},
        {"outcome": "unknown"},
        {"solve_id": solved_id, "outcome": "maybe"},
    ]
    batch = client.post("/v1/feedback", json={"feedback": items})
    assert batch.status_code == 200
    body = batch.json()
    assert (body["object"], body["recorded"], body["updated"], body["unchanged"], body["failed"]) == (
        "feedback_batch", 1, 1, 1, 3,
    )  # fmt: skip
    assert [r["status"] for r in body["results"]] == ["recorded", "unchanged", "updated", "error", "error", "error"]
    assert [r["error"]["code"] for r in body["results"][3:]] == ["not_eligible", "invalid_request", "validation_error"]
    assert error_of(client.post("/v1/feedback", json={})) == (400, "invalid_request", "feedback")
    too_many = [{"solve_id": solved_id, "outcome": "accepted"}] * 501
    assert error_of(client.post("/v1/feedback", json={"feedback": too_many})) == (422, "validation_error", "feedback")


@pytest.mark.parametrize("poll", ["GET ?wait", "POST ?wait"])
def test_a_reset_interrupts_a_long_poll_in_flight(poll: str) -> None:
    """A long-poll from before a reset is dropped unanswered when the reset comes: its solve
    belonged to the sandbox before, and must not be reported solved (nor 404) afterwards."""
    sandbox = Sandbox().start()
    try:
        with open_client(sandbox.url, SANDBOX_API_KEY) as client:
            if poll == "GET ?wait":
                solve_id = create(client, "sandbox-solve-5s").json()["id"]
                send = lambda: client.get(f"/v1/solves/{solve_id}", params={"wait": 20})  # noqa: E731
            else:
                send = lambda: create(client, "sandbox-solve-5s", wait=20)  # noqa: E731
            assert cut_in_flight(send, sandbox.reset) is httpx.RemoteProtocolError
            assert balance(client) == 100 and client.get("/v1/solves").json()["data"] == []
    finally:
        sandbox.stop()


def test_a_request_whose_body_arrives_after_a_reset_changes_nothing() -> None:
    """Logged on arrival, before the reset; its body comes after: it is dropped, and creates no
    solve and holds no credit in the fresh sandbox."""
    sandbox = Sandbox().start()
    try:
        body = json.dumps(solve_body()).encode()
        host, port = sandbox.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(f"POST /v1/solves HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SANDBOX_API_KEY}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            time.sleep(0.3)
            sandbox.reset()
            raw.sendall(body)
            assert raw.recv(65536) == b""  # closed unanswered
        with open_client(sandbox.url, SANDBOX_API_KEY) as client:
            assert balance(client) == 100 and client.get("/v1/solves").json()["data"] == []
    finally:
        sandbox.stop()
