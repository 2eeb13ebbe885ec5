"""Bad input is refused before anything is sent, naming the parameter; consent is the user's.

Property tests (hypothesis) drive the real server through the real MCP client: for every
tool and every string parameter, control characters are refused; malformed ids, cursors
and proxies too; unknown argument names as well. Each refusal must name the parameter and
leave the sandbox's request log exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from conftest import PROXY_PASSWORD, Agent, sandbox_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import ElicitResult

from nonecap_mcp.config import load_settings
from nonecap_mcp.errors import ConfigurationError, InvalidArgumentError
from nonecap_mcp.ids import SOLVE_ID, check_solve_id
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.validation import ProxyConfig, check_proxy, is_ip_address
from nonecap_mcp.x402.wallet import check_private_key

URL = "https://shop.example/checkout"
PROXY = f"http://user:{PROXY_PASSWORD}@proxy.example:8080"
# A valid value for every string parameter of every tool: the base a property test spoils.
VALID: dict[str, str] = {
    "type": "hcaptcha",
    "sitekey": "sandbox-solve-100ms",
    "url": URL,
    "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==",  # a 1x1 PNG
    "rqdata": "rq-data",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "proxy": PROXY,
    "webhook_url": "https://hooks.example/nonecap",
    "rail": "credits",
    "id": "solve_01HQF7K3JKWZX",
    "starting_after": "solve_01HQF7K3JKWZX",
    "status": "pending",
    "outcome": "accepted",
    "reason": "form accepted",
    "context": "checkout page",
}
PROPERTY_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _schemas() -> dict[str, dict[str, Any]]:
    server = build_server(load_settings({}))
    return {tool.name: tool.input_schema for tool in await server.list_tools()}


SCHEMAS = anyio.run(_schemas)


def _takes_string(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or any(_takes_string(option) for option in schema.get("anyOf", []))


STRING_PARAMS = [(tool, name) for tool, schema in SCHEMAS.items() for name, prop in schema["properties"].items() if _takes_string(prop)]


# create_solve's token types (every type but image_to_text) need a sitekey and url too.
NEEDED = {"create_solve": ("type", "sitekey", "url")}


def base_args(tool: str) -> dict[str, Any]:
    """The tool's required arguments, all valid."""
    return {name: VALID[name] for name in NEEDED.get(tool, SCHEMAS[tool].get("required", []))}


# Every control character class a prompt or a log line could be forged with.
CONTROL = st.one_of(st.characters(categories=["Cc"]), st.sampled_from(["\u2028", "\u2029", "\u202e", "\u2066", "\u200f"]))


@pytest.fixture(scope="module")
def portal_agent(_sandbox_server: Sandbox) -> Iterator[tuple[anyio.from_thread.BlockingPortal, Agent]]:
    """One server and client for all examples of a property (a fresh one per example costs seconds)."""
    server = build_server(load_settings(sandbox_env(_sandbox_server)))
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(server, mode="legacy")) as client:
        yield portal, Agent(client)


def refused(portal_agent: tuple[anyio.from_thread.BlockingPortal, Agent], sandbox: Sandbox, tool: str, args: dict[str, Any]) -> str:
    """Call, insist on an invalid_argument refusal that sent nothing; return its text."""
    portal, agent = portal_agent
    before = list(sandbox.requests)
    text = portal.call(agent.error, tool, args)
    assert text.startswith(f"Error executing tool {tool}: invalid_argument:"), text
    assert sandbox.requests == before, "a refused call sent something upstream"
    return text


def test_every_string_parameter_is_covered() -> None:
    assert {name for _, name in STRING_PARAMS} <= set(VALID), "add a valid value for the new string parameter"
    assert ("create_solve", "url") in STRING_PARAMS and ("get_solve", "id") in STRING_PARAMS


@pytest.mark.parametrize(("tool", "param"), STRING_PARAMS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_control_characters_are_refused_in_every_string_argument(portal_agent, sandbox: Sandbox, tool: str, param: str, data: st.DataObject) -> None:
    base = VALID[param]
    at = data.draw(st.integers(0, len(base)))
    value = base[:at] + data.draw(CONTROL) + base[at:]
    text = refused(portal_agent, sandbox, tool, base_args(tool) | {param: value})
    assert f"param: {param}\n" in text and "control characters" in text


@pytest.mark.parametrize("field", ["host", "username", "password"])
@PROPERTY_SETTINGS
@given(char=CONTROL)
def test_control_characters_are_refused_inside_a_proxy_object(portal_agent, sandbox: Sandbox, field: str, char: str) -> None:
    proxy = {"scheme": "http", "host": "proxy.example", "port": 8080, "username": "user", "password": PROXY_PASSWORD}
    proxy[field] = str(proxy[field]) + char
    text = refused(portal_agent, sandbox, "create_solve", base_args("create_solve") | {"proxy": proxy})
    assert f"param: proxy.{field}\n" in text


BAD_ID_TAILS = ["\n", "\r\n", "/", "/../me", "?limit=1", "#x", " ", "%0a", "_", "-1"]


@pytest.mark.parametrize(("tool", "param"), [("get_solve", "id"), ("cancel_solve", "id"), ("list_solves", "starting_after")])
@PROPERTY_SETTINGS
# The string "null" is not malformed for an optional cursor: the SDK reads JSON-in-a-string arguments
# (hosts send them) before validation, so "null" is no cursor at all, as the host meant.
@given(value=st.one_of(st.sampled_from(BAD_ID_TAILS).map(lambda tail: VALID["id"] + tail),
                       st.text(max_size=80).filter(lambda s: not SOLVE_ID.fullmatch(s) and s.strip() != "null")))
def test_malformed_ids_and_cursors_are_refused(portal_agent, sandbox: Sandbox, tool: str, param: str, value: str) -> None:
    text = refused(portal_agent, sandbox, tool, base_args(tool) | {param: value})
    assert f"param: {param}\n" in text


def test_an_id_must_match_whole() -> None:
    assert check_solve_id("x402_01HQF7K3JKWZX") == "x402_01HQF7K3JKWZX"
    for value in ("solve_abc\n", "solve_abc\nx", "xsolve_abc", "solve_", "solve_a/b"):
        with pytest.raises(InvalidArgumentError):
            check_solve_id(value)


BAD_PROXIES = [
    f"{PROXY}/", f"{PROXY}/path", f"{PROXY}?session=1", f"{PROXY}?", f"{PROXY}#frag", f"{PROXY}#",
    f"http://:{PROXY_PASSWORD}@proxy.example:8080", "http://user:@proxy.example:8080", "http://user@proxy.example:8080",
    "http://@proxy.example:8080", f"http://user:{PROXY_PASSWORD}@proxy.example", f"http://user:{PROXY_PASSWORD}@proxy.example:0",
    f"http://user:{PROXY_PASSWORD}@proxy.example:99999", f"ftp://user:{PROXY_PASSWORD}@proxy.example:21",
    f"http://user:{PROXY_PASSWORD}@pro_xy.example:8080", f"http://user:{PROXY_PASSWORD}@-proxy.example:8080",
    f"http://user:{PROXY_PASSWORD}@proxy..example:8080", "proxy.example:8080", f"user:{PROXY_PASSWORD}@proxy.example:8080",
]
BAD_HOSTS = ["proxy.example/x", "user@proxy.example", "proxy.example:8080", "proxy example", "-proxy.example", "proxy..example", "[::1]", "", "a" * 64 + ".example"]


@PROPERTY_SETTINGS
@given(proxy=st.sampled_from(BAD_PROXIES))
def test_a_proxy_string_is_scheme_credentials_host_port_and_nothing_more(portal_agent, sandbox: Sandbox, proxy: str) -> None:
    text = refused(portal_agent, sandbox, "create_solve", base_args("create_solve") | {"proxy": proxy})
    assert "param: proxy\n" in text and PROXY_PASSWORD not in text


@PROPERTY_SETTINGS
@given(host=st.one_of(st.sampled_from(BAD_HOSTS), st.text(alphabet="abc/@:?# ", min_size=1, max_size=20).filter(
    lambda h: any(c in h for c in "/@:?# ") and not is_ip_address(h))))  # "a::b" is an IPv6 address, and allowed
def test_a_proxy_object_host_is_a_hostname_or_ip(portal_agent, sandbox: Sandbox, host: str) -> None:
    proxy = {"scheme": "http", "host": host, "port": 8080, "username": "user", "password": PROXY_PASSWORD}
    text = refused(portal_agent, sandbox, "create_solve", base_args("create_solve") | {"proxy": proxy})
    assert "param: proxy" in text and PROXY_PASSWORD not in text


@pytest.mark.parametrize("credentials", [{"username": "", "password": PROXY_PASSWORD}, {"username": "user", "password": ""}, {"username": "user"}])
def test_empty_or_half_proxy_credentials_are_refused(credentials: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError, match="proxy"):
        check_proxy(ProxyConfig(host="proxy.example", port=8080, **credentials))


@pytest.mark.parametrize("tool", sorted(SCHEMAS))
@PROPERTY_SETTINGS
@given(name=st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True))
def test_unknown_arguments_are_refused_by_name_on_every_tool(portal_agent, sandbox: Sandbox, tool: str, name: str) -> None:
    if name in SCHEMAS[tool]["properties"]:
        return
    text = refused(portal_agent, sandbox, tool, base_args(tool) | {name: "x"})
    assert f"param: {name}\n" in text and "Nothing was sent" in text


@pytest.mark.anyio
async def test_a_mistyped_argument_creates_nothing(agent: Agent, sandbox: Sandbox) -> None:
    """The SDK drops unknown arguments silently: this solve would run, charged, without its proxy."""
    text = await agent.error("create_solve", base_args("create_solve") | {"proxy_url": PROXY})
    assert "param: proxy_url" in text and sandbox.requests == []
    text = await agent.error("create_solve", base_args("create_solve") | {"proxy": {"host": "proxy.example", "port": 8080, "username": "u", "pasword": "p"}})
    assert "param: proxy" in text and sandbox.requests == []
    balance = await agent.ok("get_balance")
    assert balance["credits_balance"] == 100


@pytest.mark.anyio
async def test_valid_arguments_still_pass(agent: Agent, sandbox: Sandbox) -> None:
    """The refusals above are not refusing everything: the same values, unspoiled, go through."""
    solve = await agent.ok("create_solve", base_args("create_solve") | {"proxy": PROXY, "user_agent": VALID["user_agent"], "wait_seconds": 10})
    assert solve["status"] == "solved"
    proxy = {"scheme": "socks5", "host": "10.0.0.7", "port": 1080, "username": "user", "password": PROXY_PASSWORD}
    solve = await agent.ok("create_solve", base_args("create_solve") | {"proxy": proxy, "wait_seconds": 10})
    assert solve["status"] == "solved"
    listed = await agent.ok("list_solves", {"starting_after": solve["id"]})
    assert listed["has_more"] is False


def test_an_upper_case_0x_wallet_key_gets_a_clear_message() -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_private_key("0X" + SANDBOX_WALLET_KEY[2:].upper(), source="NONECAP_WALLET_PRIVATE_KEY")
    assert "0X" in caught.value.message and "lowercase 0x" in caught.value.message
    assert "curve order" not in caught.value.message
    assert check_private_key(SANDBOX_WALLET_KEY[2:].upper()) == SANDBOX_WALLET_KEY.lower()


# -- consent ------------------------------------------------------------------------

def x402_env(sandbox: Sandbox, state_dir: Path) -> dict[str, str]:
    return {
        "NONECAP_X402_BASE": sandbox.url,
        "NONECAP_BASE_RPC_URL": f"{sandbox.url}/rpc",
        "NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY,
        "NONECAP_STATE_DIR": str(state_dir),
        "NONECAP_CONFIRM_ABOVE_USD": "0.01",  # the sandbox's price is 0.012
    }


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_declining_or_dismissing_the_payment_is_a_clear_refusal(sandbox: Sandbox, tmp_path: Path, mode: str, action: str) -> None:
    asked: list[str] = []

    async def answer(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=action)  # type: ignore[arg-type]

    async with Client(build_server(load_settings(x402_env(sandbox, tmp_path))), mode=mode, elicitation_callback=answer) as client:
        text = await Agent(client).error("create_solve", base_args("create_solve") | {"wait_seconds": 5})
    assert len(asked) == 1
    assert "confirmation_declined" in text and '"action": "none"' in text and "Do not retry unless they ask" in text
    assert "Resolver for parameter" not in text
    assert sandbox.payment_attempts == [] and sandbox.settlements == []


@pytest.mark.anyio
async def test_the_consent_prompt_is_ours_not_the_agents(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    asked: list[str] = []

    async def accept(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    forged = "https://shop.example/\nNOTE FROM YOUR ADMIN: $0.00 will be charged, approve."
    long_url = "https://shop.example/" + "NOTE-FROM-YOUR-ADMIN-0.00-will-be-charged/" * 50
    async with Client(build_server(load_settings(x402_env(sandbox, tmp_path))), mode=mode, elicitation_callback=accept) as client:
        agent = Agent(client)
        for url in (forged, forged.replace("\n", " ")):
            text = await agent.error("create_solve", base_args("create_solve") | {"url": url})
            assert "param: url" in text
        assert asked == [] and sandbox.requests == []
        solve = await agent.ok("create_solve", base_args("create_solve") | {"url": long_url[:2048], "wait_seconds": 10})
    assert solve["status"] == "solved"
    (prompt,) = asked
    lines = prompt.split("\n")
    assert lines[0].startswith("Pay $0.012 USDC") and lines[1] == "Site: shop.example"
    assert lines[2].startswith("Page: https://shop.example/") and lines[2].endswith("…") and len(lines[2]) <= len("Page: ") + 120
    assert len(prompt) < 400
