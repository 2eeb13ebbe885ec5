"""The surface hosts list (tools, prompt, resources) must not drift by accident, and the copy
the server ships and lists at start-up must be exactly what the SDK builds from the real tools.

`nonecap_mcp/tools/surface.json` is both: the reviewed snapshot and what `tools/list` (and
prompts/list, resources/list, resources/templates/list) answer until a request needs the tool
layer (`tools.server`). Regenerate it deliberately with `UPDATE_SNAPSHOTS=1 pytest tests/test_schema.py`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from conftest import sandbox_env
from mcp import Client
from pydantic import BaseModel, Field

from nonecap_mcp.config import load_settings
from nonecap_mcp.tools import build_server
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools.schemas import lean
from nonecap_mcp.tools.server import SURFACE_FILE, GuardedServer

pytestmark = pytest.mark.anyio
MODES = {"default": {}, "read_only": {"NONECAP_READ_ONLY": "true"}}


def _wire(items: list[Any]) -> list[dict[str, Any]]:
    """Items as the SDK puts them on the wire (`runner._dump_result`)."""
    return [item.model_dump(by_alias=True, mode="json", exclude_none=True) for item in items]


async def _built(server: GuardedServer) -> dict[str, list[dict[str, Any]]]:
    """The four lists the SDK builds from the registered tools, prompts and resources."""
    assert server.surface_built
    return {"tools": _wire(await server.list_tools()), "prompts": _wire(await server.list_prompts()),
            "resources": _wire(await server.list_resources()),
            "resourceTemplates": _wire(await server.list_resource_templates())}


def _text(surface: dict[str, Any]) -> str:
    return json.dumps(surface, indent=2, sort_keys=True) + "\n"


async def test_the_shipped_surface_is_what_the_sdk_builds() -> None:
    """Byte for byte, in every mode: a stale surface.json fails here, never silently in a host."""
    built = {}
    for mode, env in MODES.items():
        server = build_server(load_settings(env), eager=True)
        assert isinstance(server, GuardedServer)
        built[mode] = await _built(server)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SURFACE_FILE.write_text(_text(built))
    assert SURFACE_FILE.read_text() == _text(built), "tool surface changed: review, then UPDATE_SNAPSHOTS=1"


def test_a_second_server_in_the_process_reuses_the_built_tools() -> None:
    """Building a tool's models from its signature is most of what registering costs; a process
    that builds many servers (each test its own) pays it once. Each server still has its own
    registry: a read-only one holds only the tools that cannot spend."""
    first, second = (build_server(load_settings({}), eager=True) for _ in range(2))
    read_only = build_server(load_settings(MODES["read_only"]), eager=True)
    tools = first._tool_manager.list_tools()
    assert all(second._tool_manager.get_tool(tool.name) is tool for tool in tools)
    assert {tool.name for tool in read_only._tool_manager.list_tools()} < {tool.name for tool in tools}


async def _listed(client: Client) -> dict[str, list[dict[str, Any]]]:
    return {"tools": _wire((await client.list_tools()).tools), "prompts": _wire((await client.list_prompts()).prompts),
            "resources": _wire((await client.list_resources()).resources),
            "resourceTemplates": _wire((await client.list_resource_templates()).resource_templates)}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("surface", list(MODES))
async def test_lists_are_the_same_before_and_after_the_tool_layer_loads(surface: str, mode: str, sandbox: Sandbox) -> None:
    """What a client gets from the shipped lists equals what it gets from the registered tools,
    in both protocol eras; the first call registers them."""
    server = build_server(load_settings(sandbox_env(sandbox) | MODES[surface]))
    assert isinstance(server, GuardedServer) and server.mode == surface
    async with Client(server, mode=mode) as client:
        before = await _listed(client)
        assert not server.surface_built  # listing loaded nothing
        await client.call_tool("get_pricing", {})
        assert server.surface_built
        after = await _listed(client)
    assert before == after == json.loads(SURFACE_FILE.read_text())[surface]


async def _tools(mode: str) -> dict[str, dict]:
    async with Client(build_server(load_settings({})), mode=mode) as client:
        listed = (await client.list_tools()).tools
    return {t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed}


async def test_annotations() -> None:
    tools = await _tools("legacy")
    for name in ("get_solve", "list_solves", "get_balance", "get_pricing"):
        assert tools[name]["annotations"]["readOnlyHint"] is True
    assert tools["cancel_solve"]["annotations"]["idempotentHint"] is True
    assert tools["cancel_solve"]["annotations"]["readOnlyHint"] is False
    assert tools["create_solve"]["annotations"].get("idempotentHint", False) is False  # the spec's default
    assert tools["create_solve"]["annotations"]["destructiveHint"] is False  # the default is true: say it
    for tool in tools.values():
        assert "outputSchema" in tool


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


async def test_the_surface_stays_lean() -> None:
    """Every agent reads tools/list each session: the budgets of issue 8, measured as hosts get it.
    (before the lean rewrite: 7.1 KB of inputs, 30.6 KB whole; now 5.6 KB and 11.1 KB). The SDK's
    client validates every structured result against these schemas, so every test proves them."""
    tools = list((await _tools("auto")).values())
    described = [{k: v for k, v in tool.items() if k != "outputSchema"} for tool in tools]
    assert _size(described) <= 6 * 1024
    assert _size({"tools": tools}) <= 12 * 1024
    for tool in tools:
        text = json.dumps(tool)
        assert "$ref" not in text and "$defs" not in text, tool["name"]
        assert '{"type": "null"}' not in json.dumps(tool["inputSchema"]), tool["name"]  # optional = left out


def test_a_flat_record_is_told_by_its_structure_not_its_text() -> None:
    """In a result, a model of scalar fields becomes `object`; one with a list or a nested model
    anywhere in a field (a nullable list included) is kept in full, and words in a description
    (even "$ref") change nothing."""

    class Note(BaseModel):
        code: str
        hint: str | None = Field(None, description='Not a "$ref": only words.')

    class Tags(BaseModel):
        code: str
        tags: list[str] | None = None

    class Result(BaseModel):
        note: Note
        tags: Tags

    fields = lean(Result.model_json_schema(), nullable=True)["properties"]
    assert fields["note"] == {"type": "object"}
    assert fields["tags"]["properties"]["tags"] == {"type": ["array", "null"], "items": {"type": "string"}}


async def test_a_resource_or_a_prompt_as_the_first_request_registers_the_surface(sandbox: Sandbox) -> None:
    """Not only tools/call: a host's first resources/read or prompts/get finds what was listed
    (the static resources read the request's state, bound by middleware installed with the server)."""
    server = build_server(load_settings(sandbox_env(sandbox)))
    async with Client(server, mode="legacy") as client:
        pricing = await client.read_resource("nonecap://pricing")
        assert server.surface_built and "hcaptcha" in pricing.contents[0].text  # type: ignore[union-attr]
    server = build_server(load_settings(sandbox_env(sandbox)))
    async with Client(server, mode="auto") as client:
        prompt = await client.get_prompt("solve_captcha", {"url": "https://a.example/"})
        assert server.surface_built and "https://a.example/" in prompt.messages[0].content.text  # type: ignore[union-attr]
