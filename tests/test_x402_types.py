"""The x402 catalogue through create_solve: reCAPTCHA v2, Turnstile and image-to-text beside hCaptcha.

Each type is paid at its own published price for its own task type (the sandbox records
both and settles only what it solved), `auto` routes a type only x402 sells to x402, bad
images are refused naming `image` with nothing sent, and the operator's spend policy and
daily budget hold for every type. All through the real MCP client against the sandbox.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Agent, sandbox_env
from mcp import Client
from test_tools_x402 import URL, consenting, x402_env

from nonecap_mcp.config import load_settings
from nonecap_mcp.credentials import Secret
from nonecap_mcp.sandbox import SANDBOX_WALLET_ADDRESS, SANDBOX_WALLET_KEY, X402_PRICES_USD, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.x402.networks import usd_to_atomic
from nonecap_mcp.x402.policy import parse_payment_required
from nonecap_mcp.x402.signing import sign_payment

pytestmark = pytest.mark.anyio
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")
IMAGE = base64.b64encode(PNG).decode()


def args(captcha_type: str, **extra: Any) -> dict[str, Any]:
    """create_solve arguments for one type: the image, or a page's sitekey and url."""
    base = {"image": IMAGE} if captcha_type == "image_to_text" else {"sitekey": "sandbox-solve-100ms", "url": URL}
    return {"type": captcha_type, "wait_seconds": 10, **base, **extra}


@pytest.fixture
async def payer(sandbox: Sandbox, tmp_path: Path, mode: str) -> AsyncIterator[Agent]:
    """A host with a wallet and no API key."""
    async with Client(build_server(load_settings(x402_env(sandbox, tmp_path))), mode=mode) as client:
        yield Agent(client)


@pytest.fixture
async def both(sandbox: Sandbox, tmp_path: Path, mode: str) -> AsyncIterator[Agent]:
    """A host with an API key and a wallet."""
    env = sandbox_env(sandbox, NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY, NONECAP_STATE_DIR=str(tmp_path))
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        yield Agent(client)


TYPES = [  # (create_solve type, the rail's task type, what the answer looks like, where it goes)
    ("hcaptcha", "HardCaptchaTokenProxyLess", "P1_SANDBOX_", "form field h-captcha-response"),
    ("recaptcha_v2", "ReCaptchaV2TokenProxyLess", "03SANDBOX_", "form field g-recaptcha-response"),
    ("turnstile", "TurnstileTokenProxyLess", "0.SANDBOX_", "form field cf-turnstile-response"),
    ("image_to_text", "ImageToTextTask", "SANDBOX42", "site's text field for that image"),
]


@pytest.mark.parametrize(("captcha_type", "task_type", "answer", "goes_in"), TYPES)
async def test_each_type_is_paid_at_its_own_price_for_its_own_task_type(
    payer: Agent, sandbox: Sandbox, captcha_type: str, task_type: str, answer: str, goes_in: str
) -> None:
    price = X402_PRICES_USD[task_type]
    solve = await payer.ok("create_solve", args(captcha_type))
    assert (solve["status"], solve["rail"], solve["type"]) == ("solved", "x402", captcha_type)
    assert solve["token"].startswith(answer) and Decimal(solve["cost_usd"]) == price
    [attempt] = sandbox.payment_attempts
    assert (attempt.task_type, attempt.value, attempt.status) == (task_type, usd_to_atomic(price), 200)
    [settlement] = sandbox.settlements
    assert settlement.value == usd_to_atomic(price) and solve["settlement_tx"] == settlement.tx
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5") - price
    assert sum(r.path == "/x402/createTask" for r in sandbox.requests) == 2  # the unpaid probe and the payment
    assert goes_in in solve["how_to_use"]
    if captcha_type == "image_to_text":
        assert solve["sitekey"] is None and solve["url"] is None
        assert "no user agent or proxy needs to match" in solve["how_to_use"]
        again = await payer.ok("get_solve", {"id": solve["id"]})
        assert again["token"] == "SANDBOX42"
    else:  # the rail echoes no user agent: the guidance points at the agent's own, never the solve's null field
        assert solve["user_agent"] is None and "the user_agent you gave create_solve" in solve["how_to_use"]


async def test_an_image_as_a_data_url_and_one_that_fails(payer: Agent, sandbox: Sandbox) -> None:
    solve = await payer.ok("create_solve", args("image_to_text", image="data:image/png;base64," + IMAGE))
    assert solve["status"] == "solved" and solve["token"] == "SANDBOX42"
    failing = base64.b64encode(PNG + b"sandbox-fail-internal_error").decode()  # a test image: fails like that sitekey
    solve = await payer.ok("create_solve", args("image_to_text", image=failing))
    assert solve["status"] == "failed" and solve["cost_usd"] is None and solve["guidance"]["action"] == "retry"
    assert len(sandbox.settlements) == 1


@pytest.mark.parametrize(("sitekey", "outcome"), [("1x00000000000000000000AA", "solved"), ("2x00000000000000000000AB", "failed")])
async def test_turnstiles_own_test_sitekeys_pass_or_block_as_cloudflare_documents(
    payer: Agent, sandbox: Sandbox, sitekey: str, outcome: str
) -> None:
    solve = await payer.ok("create_solve", args("turnstile", sitekey=sitekey))
    assert solve["status"] == outcome
    assert len(sandbox.settlements) == (outcome == "solved")  # a blocked one costs nothing


async def test_auto_sends_a_type_only_x402_sells_to_x402_even_with_an_api_key(both: Agent, sandbox: Sandbox) -> None:
    hcaptcha = await both.ok("create_solve", args("hcaptcha"))
    turnstile = await both.ok("create_solve", args("turnstile", rail="auto"))
    assert hcaptcha["rail"] == "credits" and hcaptcha["id"].startswith("solve_")
    assert turnstile["rail"] == "x402" and turnstile["status"] == "solved" and turnstile["cost_usd"] == "0.003"
    listed = await both.ok("list_solves", {"type": "turnstile"})  # the type picks the rail that sells it
    assert [s["id"] for s in listed["data"]] == [turnstile["id"]]


@pytest.mark.parametrize("captcha_type", ["recaptcha_v2", "turnstile", "image_to_text"])
async def test_auto_without_a_wallet_names_the_type_and_the_rail_that_sells_it(
    sandbox: Sandbox, mode: str, captcha_type: str
) -> None:
    async with Client(build_server(load_settings(sandbox_env(sandbox))), mode=mode) as client:  # API key only
        text = await Agent(client).error("create_solve", args(captcha_type))
    assert f"rail_not_configured: {captcha_type} is sold only on the x402 rail" in text
    assert "wallet create" in text and "param: type" in text and '"action": "configure_payment"' in text
    assert sandbox.requests == []


async def test_a_credits_only_type_without_an_api_key_names_the_credits_rail(payer: Agent, sandbox: Sandbox) -> None:
    text = await payer.error("create_solve", args("hcaptcha", type="hcaptcha_enterprise"))
    assert "hcaptcha_enterprise is sold only on the credits rail" in text and "auth login" in text
    assert sandbox.requests == []


@pytest.mark.parametrize("captcha_type", ["recaptcha_v2", "image_to_text"])
async def test_rail_credits_with_a_type_only_x402_sells_is_refused(both: Agent, sandbox: Sandbox, captcha_type: str) -> None:
    text = await both.error("create_solve", args(captcha_type, rail="credits"))
    assert "param: rail" in text and f"does not sell {captcha_type}" in text and "rail=x402" in text
    assert sandbox.requests == []


BAD_IMAGES = [
    ("not base64!", "standard base64"),
    ("", "1 byte to 512 KiB"),
    (base64.b64encode(b"just some text, not a picture").decode(), "PNG, JPEG, GIF, WebP or BMP"),
    ("data:image/png," + IMAGE, ";base64,"),
    (base64.b64encode(PNG + bytes(600 * 1024)).decode(), "image: String should have at most"),  # over the schema's cap
]


@pytest.mark.parametrize(("image", "fragment"), BAD_IMAGES)
async def test_a_bad_image_is_refused_naming_image_and_nothing_is_sent(
    payer: Agent, sandbox: Sandbox, image: str, fragment: str
) -> None:
    text = await payer.error("create_solve", args("image_to_text", image=image))
    assert "image" in text and fragment in text
    assert sandbox.requests == []


@pytest.mark.parametrize(("arguments", "param", "fragment"), [
    ({"type": "image_to_text"}, "image", "needs image"),
    (args("image_to_text", sitekey="k"), "sitekey", "takes only image"),
    (args("image_to_text", url=URL), "url", "takes only image"),
    (args("recaptcha_v2", image=IMAGE), "image", "takes sitekey and url, not image"),
    ({"type": "turnstile", "url": URL}, "sitekey", "needs sitekey"),
    ({"type": "recaptcha_v2", "sitekey": "k"}, "url", "needs url"),
    (args("turnstile", proxy="http://proxy.example:8080"), "proxy", "proxyless only and takes no proxy."),
])
async def test_each_type_takes_its_own_arguments(
    payer: Agent, sandbox: Sandbox, arguments: dict[str, Any], param: str, fragment: str
) -> None:
    text = await payer.error("create_solve", arguments)
    assert f"param: {param}\n" in text and fragment in text
    assert sandbox.requests == []


async def test_the_daily_budget_stops_every_type_at_its_own_price(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_DAILY_BUDGET_USD="0.008")  # one reCAPTCHA (0.0045), not two
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        await agent.ok("create_solve", args("recaptcha_v2"))
        text = await agent.error("create_solve", args("recaptcha_v2"))
        image = await agent.ok("create_solve", args("image_to_text"))  # 0.001 still fits
        balance = await agent.ok("get_balance")
    assert "budget_exceeded" in text and image["status"] == "solved"
    assert [a.task_type for a in sandbox.payment_attempts] == ["ReCaptchaV2TokenProxyLess", "ImageToTextTask"]
    assert balance["x402_spent_today_usd"] == "0.0055" and balance["x402_budget_left_usd"] == "0.0025"


async def test_the_price_cap_applies_to_each_type_s_own_price(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_MAX_PRICE_USD="0.004")
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        text = await agent.error("create_solve", args("recaptcha_v2"))
        turnstile = await agent.ok("create_solve", args("turnstile"))
    assert "payment_refused" in text and "0.004" in text and turnstile["cost_usd"] == "0.003"
    assert [s.value for s in sandbox.settlements] == [3000]


async def test_hostile_402_for_a_new_type_is_refused_before_signing(payer: Agent, sandbox: Sandbox) -> None:
    sandbox.set_x402(version=1, overrides={"maxAmountRequired": "12000"})  # hCaptcha's price, asked for a Turnstile
    text = await payer.error("create_solve", args("turnstile"))
    assert "payment_refused" in text and "maxAmountRequired" in text and sandbox.payment_attempts == []


async def test_the_consent_prompt_for_an_image_names_no_site(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    asked: list[str] = []
    env = x402_env(sandbox, tmp_path, NONECAP_CONFIRM_ABOVE_USD="0.0005")
    async with Client(build_server(load_settings(env)), mode=mode, elicitation_callback=consenting(asked)) as client:
        solve = await Agent(client).ok("create_solve", args("image_to_text"))
    assert solve["status"] == "solved"
    assert asked == ["Pay $0.001 USDC from the x402 wallet for one image_to_text solve?\nCharged only if the solve succeeds."]


async def test_pricing_shows_which_types_each_rail_sells(both: Agent) -> None:
    pricing = await both.ok("get_pricing")
    assert pricing["types"] == {"credits": ["hcaptcha", "hcaptcha_enterprise"],
                                "x402": ["hcaptcha", "recaptcha_v2", "turnstile", "image_to_text"]}
    x402 = {p["captcha_type"]: (p["task_type"], p["price"]) for p in pricing["prices"] if p["rail"] == "x402"}
    assert x402["recaptcha_v2"] == ("ReCaptchaV2TokenProxyLess", "0.0045") and x402["image_to_text"] == ("ImageToTextTask", "0.001")


def test_the_sandbox_will_not_let_a_cheap_payment_pay_for_a_dearer_type(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        image_task = {"task": {"type": "ImageToTextTask", "body": IMAGE}}
        offered = http.post("/x402/createTask", json=image_task)
        payment = sign_payment(Secret(SANDBOX_WALLET_KEY), parse_payment_required(offered.json(), None).accepts[0])
        hard_task = {"task": {"type": "HardCaptchaTokenProxyLess", "websiteURL": URL, "websiteKey": "sandbox-solve-50ms"}}
        refused = http.post("/x402/createTask", json=hard_task, headers={payment.header_name: payment.header_value})
        paid = http.post("/x402/createTask", json=image_task, headers={payment.header_name: payment.header_value})
    assert refused.status_code == 402 and refused.json()["error"] == "invalid_exact_evm_payload_authorization_value"
    assert paid.status_code == 200 and paid.json()["solution"] == {"text": "SANDBOX42"}
    assert [(a.task_type, a.status) for a in sandbox.payment_attempts] == [
        ("HardCaptchaTokenProxyLess", 402), ("ImageToTextTask", 200)]
    assert [s.value for s in sandbox.settlements] == [1000]


async def test_the_operator_s_allowed_types_cover_the_new_ones(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_ALLOWED_TYPES="hcaptcha,image_to_text", NONECAP_ALLOWED_SITES="shop.example")
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        text = await agent.error("create_solve", args("turnstile"))
        image = await agent.ok("create_solve", args("image_to_text"))  # no page, so no site to check
    assert "type_not_allowed" in text and "param: type" in text and image["status"] == "solved"
    assert [a.task_type for a in sandbox.payment_attempts] == ["ImageToTextTask"]
