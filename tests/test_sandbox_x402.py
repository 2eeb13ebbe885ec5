"""The sandbox's x402 rail and its pretend chain, over real HTTP with httpx.

Payments are signed with our own `sign_payment` (and by hand where a test needs a header our
signer would never make); the sandbox verifies them independently with eth_account.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from conftest import cut_in_flight, scaled

from nonecap_mcp.credentials import Secret
from nonecap_mcp.sandbox import (
    SANDBOX_PAY_TO,
    SANDBOX_WALLET_ADDRESS,
    SANDBOX_WALLET_KEY,
    X402_PRICES_USD,
    Sandbox,
)
from nonecap_mcp.x402.networks import NETWORKS
from nonecap_mcp.x402.policy import PaymentRequirement, PolicyViolation, SpendPolicy, choose_requirement
from nonecap_mcp.x402.policy import parse_payment_required
from nonecap_mcp.x402.signing import decode_receipt, sign_payment

HARD = "HardCaptchaTokenProxyLess"
USDC = NETWORKS["base"].asset
PRICE_ATOMIC = 12_000
WALLET = Secret(SANDBOX_WALLET_KEY)
OTHER_KEY = Secret("0x" + "11" * 32)  # a throwaway key, never funded unless a test says so
EVIL = "0x000000000000000000000000000000000000bEEF"
FAST = "sandbox-solve-50ms"


def open_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, verify=False, timeout=10)


@pytest.fixture(scope="module")
def shared_client(_sandbox_server: Sandbox) -> Iterator[httpx.Client]:
    with open_client(_sandbox_server.url) as client:
        yield client


@pytest.fixture
def client(sandbox: Sandbox, shared_client: httpx.Client) -> httpx.Client:
    return shared_client


def task_body(sitekey: str = FAST, task_type: str = HARD, **extra: object) -> dict[str, object]:
    task = {"type": task_type, "websiteURL": "https://example.com/login", "websiteKey": sitekey}
    return {"task": task, **extra}


def create(client: httpx.Client, sitekey: str = FAST, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post("/x402/createTask", json=task_body(sitekey), headers=headers or {})


def requirement(client: httpx.Client, sitekey: str = FAST) -> PaymentRequirement:
    """Provoke the 402 and parse it with our client's parser (v1 body or v2 header)."""
    response = create(client, sitekey)
    assert response.status_code == 402
    header = response.headers.get("PAYMENT-REQUIRED")
    return parse_payment_required(None if header else response.json(), header).accepts[0]


def signed(client: httpx.Client, key: Secret = WALLET, **kwargs: Any) -> tuple[str, str]:
    payment = sign_payment(key, requirement(client), **kwargs)
    return payment.header_name, payment.header_value


def unb64(value: str) -> Any:
    return json.loads(base64.b64decode(value))


def b64(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def tampered(header_value: str, **changes: object) -> str:
    document = unb64(header_value)
    document["payload"]["authorization"].update(changes)
    return b64(document)


def assert_nothing_settled(sandbox: Sandbox) -> None:
    assert sandbox.settlements == []
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5.00")
    assert sandbox.usdc_balance(SANDBOX_PAY_TO) == 0


def reason_of(response: httpx.Response) -> str:
    assert response.status_code == 402
    header = response.headers.get("PAYMENT-REQUIRED")
    return unb64(header)["error"] if header else response.json()["error"]


# -- constants and pricing ----------------------------------------------------------


def test_sandbox_wallet_and_pay_to_are_plainly_sandbox_ones() -> None:
    from eth_account import Account
    from eth_utils import keccak, to_checksum_address

    assert SANDBOX_WALLET_KEY == "0x" + keccak(text="nonecap sandbox wallet - not a real wallet, never fund it").hex()
    assert Account.from_key(SANDBOX_WALLET_KEY).address == SANDBOX_WALLET_ADDRESS
    assert to_checksum_address(SANDBOX_PAY_TO) == SANDBOX_PAY_TO and int(SANDBOX_PAY_TO, 16) != 0
    assert SANDBOX_PAY_TO.lower().startswith("0x5a4db0c") and SANDBOX_PAY_TO.endswith("402")


def test_pricing_is_public_and_exact(client: httpx.Client) -> None:
    response = client.get("/x402/pricing")
    assert response.status_code == 200
    assert response.json() == {
        "network": "base",
        "payTo": SANDBOX_PAY_TO,
        "asset": "USDC",
        "pricesUsd": {
            "ReCaptchaV2TokenProxyLess": 0.0045,
            "HardCaptchaTokenProxyLess": 0.012,
            "TurnstileTokenProxyLess": 0.003,
            "ImageToTextTask": 0.001,
        },
    }
    prices = json.loads(response.text, parse_float=Decimal)["pricesUsd"]
    assert prices == X402_PRICES_USD


# -- the 402 challenge --------------------------------------------------------------


def test_402_v1_body_is_the_seeds_shape(sandbox: Sandbox, client: httpx.Client) -> None:
    response = create(client)
    assert response.status_code == 402
    assert "PAYMENT-REQUIRED" not in response.headers
    assert response.json() == {
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": [
            {
                "scheme": "exact",
                "network": "base",
                "maxAmountRequired": "12000",
                "resource": f"{sandbox.url}/x402/createTask",
                "description": f"NoneCap sandbox solve: {HARD}",
                "mimeType": "application/json",
                "payTo": SANDBOX_PAY_TO,
                "maxTimeoutSeconds": round(scaled(90)),  # the rail's 90 s, in the suite's time scale
                "asset": USDC,
                "extra": {"name": "USD Coin", "version": "2"},
            }
        ],
    }


def test_402_v2_is_a_payment_required_header(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_x402(2)
    assert sandbox.x402_version == 2
    response = create(client)
    assert response.status_code == 402
    assert response.json()["error"] == "PAYMENT-SIGNATURE header is required"
    assert unb64(response.headers["PAYMENT-REQUIRED"]) == {
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": {
            "url": f"{sandbox.url}/x402/createTask",
            "description": f"NoneCap sandbox solve: {HARD}",
            "mimeType": "application/json",
        },
        "accepts": [
            {
                "scheme": "exact",
                "network": "eip155:8453",
                "amount": "12000",
                "asset": USDC,
                "payTo": SANDBOX_PAY_TO,
                "maxTimeoutSeconds": round(scaled(90)),  # the rail's 90 s, in the suite's time scale
                "extra": {"name": "USD Coin", "version": "2"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        ({"type": HARD}, "task"),
        (task_body(task_type="FunCaptchaTask"), "Unsupported task type"),
        ({"task": {"type": "ImageToTextTask"}}, "task.body"),
        ({"task": {"type": "ImageToTextTask", "body": "not base64!"}}, "task.body"),
        ({"task": {"type": HARD, "websiteKey": FAST}}, "websiteURL"),
        ({"task": {"type": HARD, "websiteURL": "https://example.com"}}, "websiteKey"),
        (task_body(appId="abc"), "appId"),
        ({"task": {**task_body()["task"], "softId": 1}}, "softId"),  # type: ignore[dict-item]
        (task_body(devId="x"), "devId"),
        (task_body(selectionMode=3), "selectionMode"),
        (task_body("sandbox-typo"), "Unknown sandbox test sitekey"),
    ],
)
def test_bad_bodies_are_400_before_any_402(sandbox: Sandbox, client: httpx.Client, body: object, fragment: str) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = client.post("/x402/createTask", **kwargs)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and fragment in response.json()["error"]


def test_wrong_method_and_unknown_path_use_the_rail_shape(client: httpx.Client) -> None:
    assert client.get("/x402/createTask").status_code == 405
    missing = client.get("/x402/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "No such endpoint."}


# -- paying ---------------------------------------------------------------------------


def test_good_payment_solves_settles_and_returns_a_receipt(sandbox: Sandbox, client: httpx.Client) -> None:
    payment = sign_payment(WALLET, requirement(client))
    response = create(client, headers={payment.header_name: payment.header_value})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"taskId", "status", "solution", "cost", "solveTimeMs", "resultToken"}
    assert body["status"] == "ready" and body["cost"] == 0.0028 and body["solveTimeMs"] == 50
    token = body["solution"]["token"]
    assert token.startswith("P1_SANDBOX_") and token.endswith("_NOT_A_REAL_HCAPTCHA_TOKEN")
    assert body["solution"]["gRecaptchaResponse"] == token

    receipt = decode_receipt(response.headers["X-PAYMENT-RESPONSE"])
    assert receipt is not None and receipt.success and receipt.network == "base"
    assert receipt.payer == SANDBOX_WALLET_ADDRESS
    assert receipt.transaction is not None and len(receipt.transaction) == 66

    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5.00") - Decimal("0.012")
    assert sandbox.usdc_balance(SANDBOX_PAY_TO) == Decimal("0.012")
    [settlement] = sandbox.settlements
    assert (settlement.payer, settlement.pay_to, settlement.value) == (SANDBOX_WALLET_ADDRESS, SANDBOX_PAY_TO, 12_000)
    assert (settlement.nonce, settlement.tx, settlement.task_id) == (
        payment.nonce, receipt.transaction, body["taskId"])  # fmt: skip
    assert settlement.usd == Decimal("0.012")
    [attempt] = sandbox.payment_attempts
    assert (attempt.status, attempt.nonce, attempt.task_id) == (200, payment.nonce, body["taskId"])


def test_failed_solve_settles_nothing_and_the_same_authorization_pays_once_later(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    name, value = signed(client)
    failed = create(client, "sandbox-fail-proxy_error-50ms", {name: value})
    assert failed.status_code == 422
    assert failed.json()["errorCode"] == "proxy_error" and "proxy" in failed.json()["error"]
    assert "X-PAYMENT-RESPONSE" not in failed.headers
    assert_nothing_settled(sandbox)

    # The authorization is bound to the price, not to the task: re-sent for a solvable one, it pays once.
    assert create(client, FAST, {name: value}).status_code == 200
    assert len(sandbox.settlements) == 1
    replay = create(client, FAST, {name: value})
    assert reason_of(replay) == "invalid_exact_evm_nonce_already_used"
    assert replay.json()["accepts"][0]["payTo"] == SANDBOX_PAY_TO  # the 402 offers the requirements again
    assert len(sandbox.settlements) == 1
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("4.988")
    assert [a.status for a in sandbox.payment_attempts] == [422, 200, 402]


def _wrong_domain_header(client: httpx.Client, name: str = "USDC") -> str:
    """A v1 header signed under another EIP-712 domain name: our signer never does this."""
    from eth_account import Account

    req = requirement(client)
    account = Account.from_key(SANDBOX_WALLET_KEY)
    now = int(time.time())
    message = {"from": account.address, "to": req.pay_to, "value": req.amount_atomic, "validAfter": now - 600,
               "validBefore": now + 90, "nonce": b"\x07" * 32}  # fmt: skip
    types = {"TransferWithAuthorization": [
        {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]}  # fmt: skip
    domain = {"name": name, "version": "2", "chainId": 8453, "verifyingContract": USDC}
    signature = account.sign_typed_data(domain_data=domain, message_types=types, message_data=message).signature
    authorization = {**message, "nonce": "0x" + "07" * 32}
    authorization = {k: str(v) if isinstance(v, int) else v for k, v in authorization.items()}
    return b64({"x402Version": 1, "scheme": "exact", "network": "base",
                "payload": {"signature": signature.to_0x_hex(), "authorization": authorization}})  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("value", "invalid_exact_evm_payload_authorization_value"),
        ("pay_to", "invalid_exact_evm_payload_recipient_mismatch"),
        ("signature", "invalid_exact_evm_payload_signature"),
        ("from", "invalid_exact_evm_payload_signature"),
        ("domain", "invalid_exact_evm_payload_signature"),
        ("network", "invalid_network"),
        ("scheme", "invalid_scheme"),
        ("version", "invalid_x402_version"),
        ("garbage", "invalid_payload"),
        ("nonce", "invalid_payload"),
    ],
)
def test_tampered_payments_are_402_with_the_reason(
    sandbox: Sandbox, client: httpx.Client, tamper: str, reason: str
) -> None:
    _, value = signed(client)
    document = unb64(value)
    auth = document["payload"]["authorization"]
    if tamper == "value":
        auth["value"] = str(PRICE_ATOMIC + 1)
    elif tamper == "pay_to":
        auth["to"] = EVIL
    elif tamper == "signature":
        sig = document["payload"]["signature"]
        document["payload"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    elif tamper == "from":
        auth["from"] = EVIL
    elif tamper == "network":
        document["network"] = "base-sepolia"
    elif tamper == "scheme":
        document["scheme"] = "upto"
    elif tamper == "version":
        document["x402Version"] = 2
    elif tamper == "nonce":
        auth["nonce"] = "0x1234"
    header = "!!not base64!!" if tamper == "garbage" else b64(document)
    if tamper == "domain":
        header = _wrong_domain_header(client)
    response = create(client, headers={"X-PAYMENT": header})
    assert reason_of(response) == reason
    assert response.json()["accepts"][0]["maxAmountRequired"] == "12000"
    assert_nothing_settled(sandbox)
    assert sandbox.payment_attempts[-1].reason == reason


@pytest.mark.parametrize(
    ("now_offset", "reason"),
    [
        (-200, "invalid_exact_evm_payload_authorization_valid_before"),  # validBefore = now - 110
        (-87, "invalid_exact_evm_payload_authorization_valid_before"),  # 3 s left: under the 6 s margin
        (700, "invalid_exact_evm_payload_authorization_valid_after"),  # validAfter = now + 100
    ],
)
def test_authorization_outside_its_window_is_402(
    sandbox: Sandbox, client: httpx.Client, now_offset: int, reason: str
) -> None:
    payment = sign_payment(WALLET, requirement(client), now=int(time.time()) + now_offset)
    assert reason_of(create(client, headers={"X-PAYMENT": payment.header_value})) == reason
    assert_nothing_settled(sandbox)


def test_unfunded_payer_is_402_insufficient_funds_until_funded(sandbox: Sandbox, client: httpx.Client) -> None:
    name, value = signed(client, OTHER_KEY)
    assert reason_of(create(client, headers={name: value})) == "insufficient_funds"
    assert_nothing_settled(sandbox)
    payer = unb64(value)["payload"]["authorization"]["from"]
    sandbox.fund(payer, "0.011999")
    assert reason_of(create(client, headers={name: value})) == "insufficient_funds"
    sandbox.fund(payer, Decimal("0.02"))
    assert create(client, headers={name: value}).status_code == 200
    assert sandbox.usdc_balance(payer) == Decimal("0.008")
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5.00")


def test_same_authorization_sent_twice_at_once_settles_once(sandbox: Sandbox) -> None:
    with open_client(sandbox.url) as first, open_client(sandbox.url) as second:
        name, value = signed(first)
        results: list[int] = []

        def send(client: httpx.Client) -> None:
            results.append(create(client, "sandbox-solve-200ms", {name: value}).status_code)

        threads = [threading.Thread(target=send, args=(c,)) for c in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == [200, 402]
    assert len(sandbox.settlements) == 1
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("4.988")


def test_expired_solve_is_504_and_the_authorization_stays_unspent(sandbox: Sandbox, client: httpx.Client) -> None:
    name, value = signed(client)
    response = create(client, "sandbox-expire-100ms", {name: value})
    assert response.status_code == 504 and response.json()["errorCode"] == "timeout"
    assert_nothing_settled(sandbox)
    assert create(client, FAST, {name: value}).status_code == 200


def test_solve_over_the_cap_is_504() -> None:
    with Sandbox(x402_solve_timeout=0.2) as sandbox, open_client(sandbox.url) as client:
        name, value = signed(client)
        started = time.monotonic()
        response = create(client, "sandbox-solve-2s", {name: value})
        assert response.status_code == 504 and "0.2 seconds" in response.json()["error"]
        assert time.monotonic() - started < 1.5
        assert sandbox.settlements == []


# -- x402 v2 ---------------------------------------------------------------------------


def test_v2_end_to_end(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_x402(2)
    payment = sign_payment(WALLET, requirement(client))
    assert payment.header_name == "PAYMENT-SIGNATURE"
    assert reason_of(create(client, headers={"X-PAYMENT": payment.header_value})) == (
        "PAYMENT-SIGNATURE header is required")  # fmt: skip
    response = create(client, headers={"PAYMENT-SIGNATURE": payment.header_value})
    assert response.status_code == 200
    assert "X-PAYMENT-RESPONSE" not in response.headers
    receipt = decode_receipt(response.headers["PAYMENT-RESPONSE"])
    assert receipt is not None and receipt.success and receipt.network == "eip155:8453"
    assert sandbox.settlements[0].network == "eip155:8453"
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("4.988")


def test_v2_accepted_must_be_what_was_offered(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_x402(2)
    payment = sign_payment(WALLET, requirement(client))
    document = unb64(payment.header_value)
    document["accepted"]["maxTimeoutSeconds"] = 60
    response = create(client, headers={"PAYMENT-SIGNATURE": b64(document)})
    assert reason_of(response) == "no_matching_payment_requirements"
    assert unb64(response.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "12000"
    assert_nothing_settled(sandbox)


# -- getTaskResult ---------------------------------------------------------------------


def test_get_task_result_with_right_and_wrong_tokens(sandbox: Sandbox, client: httpx.Client) -> None:
    name, value = signed(client)
    paid = create(client, headers={name: value}).json()
    again = client.post("/x402/getTaskResult", json={"taskId": paid["taskId"], "resultToken": paid["resultToken"]})
    assert again.status_code == 200 and again.json() == paid
    by_header = client.post("/x402/getTaskResult", json={"taskId": paid["taskId"]},
                            headers={"X-Result-Token": paid["resultToken"]})  # fmt: skip
    assert by_header.json() == paid
    wrong = client.post("/x402/getTaskResult", json={"taskId": paid["taskId"], "resultToken": "nope"})
    assert wrong.status_code == 403 and "resultToken" in wrong.json()["error"]
    assert client.post("/x402/getTaskResult", json={"taskId": paid["taskId"]}).status_code == 403
    unknown = client.post("/x402/getTaskResult", json={"taskId": "0" * 36, "resultToken": paid["resultToken"]})
    assert unknown.status_code == 404
    assert client.post("/x402/getTaskResult", json={}).status_code == 400
    assert len(sandbox.settlements) == 1  # re-fetching is free


# -- rate limit, faults, request log -----------------------------------------------------


def test_rate_limit_per_ip_across_x402_with_retry_after() -> None:
    with Sandbox(x402_rate_limit=3) as sandbox, open_client(sandbox.url) as client:
        assert client.get("/x402/pricing").status_code == 200
        assert create(client).status_code == 402
        assert client.post("/x402/getTaskResult", json={"taskId": "x"}).status_code == 404
        limited = client.get("/x402/pricing")
        assert limited.status_code == 429 and limited.json()["errorCode"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert create(client).status_code == 429
        assert client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).status_code == 200
        sandbox.reset()
        assert client.get("/x402/pricing").status_code == 200
    with pytest.raises(ValueError):
        Sandbox(x402_rate_limit=0)


def test_drop_after_loses_the_answer_but_the_payment_settled(sandbox: Sandbox, client: httpx.Client) -> None:
    name, value = signed(client)
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="drop_after")
    with pytest.raises(httpx.TransportError):
        create(client, headers={name: value})
    assert len(sandbox.settlements) == 1
    assert sandbox.requests[-1].status is None
    assert reason_of(create(client, headers={name: value})) == "invalid_exact_evm_nonce_already_used"


def test_skip_lets_the_unpaid_probe_through_and_faults_the_paid_request(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="drop_after", skip=1)
    name, value = signed(client)  # the probe: skipped, a normal 402
    with pytest.raises(httpx.TransportError):
        create(client, headers={name: value})
    assert len(sandbox.settlements) == 1
    assert [r.status for r in sandbox.requests] == [402, None]
    assert create(client).status_code == 402  # the fault is used up
    described = client.post("/_sandbox/faults", json={"method": "GET", "path": "/x402/pricing", "action": "status",
                                                      "status": 503, "skip": 2}).json()  # fmt: skip
    assert described["skip"] == 2
    assert [client.get("/x402/pricing").status_code for _ in range(3)] == [200, 200, 503]


def test_drop_before_and_status_faults_settle_nothing(sandbox: Sandbox, client: httpx.Client) -> None:
    name, value = signed(client)
    sandbox.inject_fault(method="POST", path="/x402/*", action="drop_before")
    with pytest.raises(httpx.TransportError):
        create(client, headers={name: value})
    sandbox.inject_fault(method="*", path="/x402/createTask", action="status", status=503, retry_after=2)
    unavailable = create(client, headers={name: value})
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "2"
    assert unavailable.json() == {"error": "All workers busy; retry after the Retry-After delay.",
                                  "errorCode": "pool_exhausted"}  # fmt: skip
    assert_nothing_settled(sandbox)
    assert create(client, headers={name: value}).status_code == 200


def test_request_log_records_x402_and_rpc_requests(sandbox: Sandbox, client: httpx.Client) -> None:
    client.get("/x402/pricing")
    create(client)
    client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
    assert [(r.method, r.path, r.status) for r in sandbox.requests] == [
        ("GET", "/x402/pricing", 200), ("POST", "/x402/createTask", 402), ("POST", "/rpc", 200)]  # fmt: skip


# -- the sandbox chain -------------------------------------------------------------------


def rpc(client: httpx.Client, method: str, *params: object) -> dict[str, Any]:
    response = client.post("/rpc", json={"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)})
    assert response.status_code == 200
    return response.json()


def balance_of_call(address: str, to: str = USDC) -> dict[str, str]:
    return {"to": to, "data": "0x70a08231" + "00" * 12 + address[2:].lower()}


def test_rpc_balance_of_and_authorization_state(sandbox: Sandbox, client: httpx.Client) -> None:
    assert rpc(client, "eth_chainId")["result"] == "0x2105"
    assert int(rpc(client, "eth_call", balance_of_call(SANDBOX_WALLET_ADDRESS), "latest")["result"], 16) == 5_000_000
    assert int(rpc(client, "eth_call", balance_of_call(EVIL), "latest")["result"], 16) == 0
    payment = sign_payment(WALLET, requirement(client))
    state_call = {"to": USDC, "data": "0xe94a0102" + "00" * 12 + SANDBOX_WALLET_ADDRESS[2:] + payment.nonce[2:]}
    assert int(rpc(client, "eth_call", state_call, "latest")["result"], 16) == 0
    assert create(client, headers={payment.header_name: payment.header_value}).status_code == 200
    assert int(rpc(client, "eth_call", state_call, "latest")["result"], 16) == 1
    result = rpc(client, "eth_call", balance_of_call(SANDBOX_WALLET_ADDRESS), "latest")["result"]
    assert len(result) == 66 and int(result, 16) == 4_988_000


def test_authorization_state_is_used_only_once_the_rail_settled_that_authorization(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    def used(payer: str, nonce: str) -> int:
        call = {"to": USDC, "data": "0xe94a0102" + "00" * 12 + payer[2:].lower() + nonce[2:]}
        return int(rpc(client, "eth_call", call, "latest")["result"], 16)

    failed = sign_payment(WALLET, requirement(client, "sandbox-fail-proxy_error"))
    assert create(client, "sandbox-fail-proxy_error", {failed.header_name: failed.header_value}).status_code == 422
    assert used(SANDBOX_WALLET_ADDRESS, failed.nonce) == 0  # verified and run, never settled
    settled = sign_payment(WALLET, requirement(client))
    assert create(client, headers={settled.header_name: settled.header_value}).status_code == 200
    assert used(SANDBOX_WALLET_ADDRESS, settled.nonce) == 1
    assert used(EVIL, settled.nonce) == 0  # the nonce is the payer's, not anyone's
    assert used(SANDBOX_WALLET_ADDRESS, failed.nonce) == 0
    sandbox.reset()
    assert used(SANDBOX_WALLET_ADDRESS, settled.nonce) == 0  # a reset chain forgets


def test_rpc_errors_are_json_rpc_errors(sandbox: Sandbox, client: httpx.Client) -> None:
    assert rpc(client, "eth_sendRawTransaction", "0x00")["error"]["code"] == -32601
    assert rpc(client, "eth_call", {"to": USDC, "data": "0xdeadbeef"}, "latest")["error"]["message"] == (
        "execution reverted")  # fmt: skip
    assert rpc(client, "eth_call", balance_of_call(SANDBOX_WALLET_ADDRESS, to=EVIL), "latest")["result"] == "0x"
    assert rpc(client, "eth_call", "nonsense")["error"]["code"] == -32602
    parse_error = client.post("/rpc", content=b"{")
    assert parse_error.status_code == 200 and parse_error.json()["error"]["code"] == -32700
    batch = client.post("/rpc", json=[{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, {"id": 2}]).json()
    assert batch[0]["result"] == "0x2105" and batch[1]["error"]["code"] == -32600
    wrong_method = client.get("/rpc")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# -- hostile 402s --------------------------------------------------------------------------


def test_hostile_overrides_show_up_in_the_402_and_our_policy_refuses_them(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_x402(1, {"payTo": EVIL, "maxAmountRequired": "5000000", "asset": EVIL, "extra": None})
    accept = create(client).json()["accepts"][0]
    assert (accept["payTo"], accept["maxAmountRequired"], accept["asset"]) == (EVIL, "5000000", EVIL)
    assert "extra" not in accept and accept["scheme"] == "exact"

    sandbox.set_x402(1, {"payTo": EVIL})
    with pytest.raises(PolicyViolation) as refused:
        choose_requirement(
            parse_payment_required(create(client).json(), None),
            policy=SpendPolicy(), price_usd=Decimal("0.012"), pricing_pay_to=SANDBOX_PAY_TO,
            resource_url=f"{sandbox.url}/x402/createTask",
        )  # fmt: skip
    assert refused.value.field == "payTo"

    several = [{"scheme": "exact", "network": "base", "payTo": EVIL}, {"scheme": "upto"}, "junk"]
    sandbox.set_x402(1, {"accepts": several, "x402Version": 7})
    assert create(client).json() == {"x402Version": 7, "error": "X-PAYMENT header is required", "accepts": several}

    sandbox.set_x402(2, {"resource": {"url": "https://evil.example/"}, "network": "eip155:1", "maxTimeoutSeconds": 10**9})
    document = unb64(create(client).headers["PAYMENT-REQUIRED"])
    assert document["resource"] == {"url": "https://evil.example/"}
    assert (document["accepts"][0]["network"], document["accepts"][0]["maxTimeoutSeconds"]) == ("eip155:1", 10**9)
    assert sandbox.x402_overrides["network"] == "eip155:1"
    sandbox.reset()
    assert (sandbox.x402_version, sandbox.x402_overrides) == (1, {})
    assert create(client).json()["accepts"][0]["payTo"] == SANDBOX_PAY_TO


def test_a_naive_client_that_pays_a_hostile_402_is_caught(sandbox: Sandbox, client: httpx.Client) -> None:
    # Verification follows the offer, so a client that signs a hostile payTo really pays it...
    sandbox.set_x402(1, {"payTo": EVIL})
    assert create(client, headers=dict([signed(client)])).status_code == 200
    assert [(s.pay_to, s.value) for s in sandbox.settlements] == [(EVIL, PRICE_ATOMIC)]
    # ...while one signing another EIP-712 domain passes the server but not the (sandbox) chain.
    sandbox.reset()
    sandbox.set_x402(1, {"extra": {"name": "USDC", "version": "2"}})
    assert reason_of(create(client, headers={"X-PAYMENT": _wrong_domain_header(client)})) == (
        "invalid_exact_evm_payload_signature")  # fmt: skip
    assert_nothing_settled(sandbox)
    assert sandbox.payment_attempts[-1].status == 402


def test_bad_python_controls_raise_value_error(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.set_x402(3)
    with pytest.raises(ValueError):
        sandbox.set_x402(1, {"accepts": "nope"})
    with pytest.raises(ValueError):
        sandbox.fund(EVIL, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sandbox.fund(EVIL, "0.0000001")
    with pytest.raises(ValueError):
        sandbox.fund("0x1234", "1")
    sandbox.x402_version = 2
    assert sandbox.x402_version == 2


def test_x402_control_endpoints_over_http(sandbox: Sandbox, client: httpx.Client) -> None:
    configured = client.post("/_sandbox/x402", json={"version": 2, "overrides": {"payTo": EVIL}})
    assert configured.status_code == 200
    assert (configured.json()["version"], configured.json()["overrides"]) == (2, {"payTo": EVIL})
    assert unb64(create(client).headers["PAYMENT-REQUIRED"])["accepts"][0]["payTo"] == EVIL
    assert client.post("/_sandbox/x402", json={"version": 5}).status_code == 422
    assert client.post("/_sandbox/x402", json={"bogus": 1}).status_code == 422
    assert client.post("/_sandbox/x402", json={}).json()["version"] == 1

    funded = client.post("/_sandbox/x402/fund", json={"address": EVIL, "usd": "1.5"})
    assert funded.json() == {"object": "balance", "address": EVIL, "usd": "1.5"}
    assert sandbox.usdc_balance(EVIL) == Decimal("1.5")
    assert client.post("/_sandbox/x402/fund", json={"address": EVIL, "usd": 1.5}).status_code == 422

    assert create(client, headers=dict([signed(client)])).status_code == 200
    view = client.get("/_sandbox/x402").json()
    assert [(s["payer"], s["value"], s["usd"]) for s in view["settlements"]] == [
        (SANDBOX_WALLET_ADDRESS, PRICE_ATOMIC, "0.012")]  # fmt: skip
    assert [a["status"] for a in view["payment_attempts"]] == [200]
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/x402").json()["settlements"] == []
    assert sandbox.usdc_balance(EVIL) == 0
    assert all(not r.path.startswith("/_sandbox") for r in sandbox.requests)


def test_stop_cuts_a_solve_short_and_settles_nothing() -> None:
    sandbox = Sandbox().start()
    with open_client(sandbox.url) as client:
        header = dict([signed(client)])
        cut_in_flight(lambda: create(client, "sandbox-hang", header), sandbox.stop)
    assert sandbox.settlements == []


@pytest.mark.parametrize("hold", ["delay fault", "slow solve"])
def test_a_reset_interrupts_a_paid_request_in_flight_and_settles_nothing(hold: str) -> None:
    """The sandbox is shared by many tests and reset between them: a paid request from before a
    reset must not settle after it (it would show up in the next test's settlements). It is
    dropped unanswered, not answered 503: a client may retry a 503 with the same payment, and
    the reset has freed that nonce."""
    sandbox = Sandbox().start()
    try:
        with open_client(sandbox.url) as client:
            header = dict([signed(client)])
            if hold == "delay fault":
                sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=30)
            sitekey = "sandbox-solve-20s" if hold == "slow solve" else FAST
            assert cut_in_flight(lambda: create(client, sitekey, header), sandbox.reset) is httpx.RemoteProtocolError
            assert sandbox.settlements == [] and sandbox.payment_attempts == []
            assert [r.status for r in sandbox.requests] == []  # the log starts afresh at the reset
            assert create(client).status_code == 402  # requests after the reset are served as before
    finally:
        sandbox.stop()
