"""tools/list snapshot: names, schemas and annotations must not drift by accident.

Regenerate deliberately with `UPDATE_SNAPSHOTS=1 pytest tests/test_schema.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client
from pydantic import BaseModel, Field

from nonecap_mcp.config import load_settings
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.schemas import lean

pytestmark = pytest.mark.anyio
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def _tools(mode: str) -> dict[str, dict]:
    async with Client(build_server(load_settings({})), mode=mode) as client:
        listed = (await client.list_tools()).tools
    return {t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_list_matches_snapshot(mode: str) -> None:
    tools = await _tools(mode)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(tools, indent=2, sort_keys=True) + "\n")
    assert tools == json.loads(SNAPSHOT.read_text()), "tool surface changed: review, then UPDATE_SNAPSHOTS=1"


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
