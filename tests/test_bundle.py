"""The MCP bundle (dist/nonecap-mcp.mcpb) as a desktop host installs and starts it.

A host unpacks the bundle, fills the manifest's ``mcp_config`` (``${__dirname}`` and every
``${user_config.…}``, an unset optional field as the empty string) and runs the command; for
this ``uv`` bundle that is ``uv run --directory <bundle> --frozen nonecap-mcp serve``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from host_launch import host_env, launched
from npm_packages import npm_ci

from nonecap_mcp import __version__
from nonecap_mcp.config import ENV_VARS, STATE_DIR_ENV
from nonecap_mcp.tools.server import shipped_surface
from nonecap_mcp.credentials import API_KEY_ENV
from nonecap_mcp.x402.wallet import RPC_URL_ENV, WALLET_KEY_ENV

BUNDLE_DIR = ROOT / "bundle"
MANIFEST: dict[str, Any] = json.loads((BUNDLE_DIR / "manifest.json").read_text())
TOOLS = {tool["name"] for tool in shipped_surface("default")["tools"]}
SECRETS_BY_FIELD = {"api_key": API_KEY_ENV, "wallet_private_key": WALLET_KEY_ENV}
PLACEHOLDER = re.compile(r"\$\{user_config\.(\w+)\}")
SOLVE = {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 5}


def test_manifest_matches_the_server() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert MANIFEST["version"] == __version__ and MANIFEST["description"] == project["description"]
    assert {tool["name"] for tool in MANIFEST["tools"]} == TOOLS
    env = MANIFEST["server"]["mcp_config"]["env"]
    assert set(env) <= set(ENV_VARS.values()) | {API_KEY_ENV, WALLET_KEY_ENV, RPC_URL_ENV, STATE_DIR_ENV}
    fields = MANIFEST["user_config"]
    used = {var: PLACEHOLDER.fullmatch(value)[1] for var, value in env.items()}  # type: ignore[index]
    assert sorted(used.values()) == sorted(fields), "every user_config field feeds exactly one variable"
    assert {name for name, field in fields.items() if field.get("sensitive")} == set(SECRETS_BY_FIELD)
    assert all(used[var] == name for name, var in SECRETS_BY_FIELD.items())
    # Unset must mean the server's own default, so only switches carry a default (off).
    assert {name: f["default"] for name, f in fields.items() if "default" in f} == {"sandbox": False, "read_only": False}
    assert not any(field.get("required") for field in fields.values())


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bundle/build.sh run as a maintainer runs it: mcpb validate, then mcpb pack."""
    from uv import find_uv_bin

    npm_ci(BUNDLE_DIR, "the MCP bundle build (@anthropic-ai/mcpb)")
    out = tmp_path_factory.mktemp("mcpb") / "nonecap-mcp.mcpb"
    env = host_env([Path(find_uv_bin()).parent, Path(sys.executable).parent], UV_PYTHON=sys.executable, UV_PYTHON_DOWNLOADS="never")
    done = subprocess.run(["bash", str(BUNDLE_DIR / "build.sh"), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == str(out) and "Manifest schema validation passes" in done.stderr
    return out


def test_bundle_holds_the_source_and_its_lock_and_nothing_else(built_bundle: Path) -> None:
    with zipfile.ZipFile(built_bundle) as bundle:
        names = set(bundle.namelist())
        icon = bundle.read("icon.png")
    assert {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "LICENSE", "server/cli.py", "tools/solves.py"} <= names
    assert {name.split("/")[0] for name in names} == {
        "manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "LICENSE", "server", "tools"
    }
    assert not any("__pycache__" in name for name in names)
    assert icon.startswith(b"\x89PNG\r\n\x1a\n")


def host_command(directory: Path, user_config: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The manifest's command and env with ``${__dirname}`` and the user's settings filled in."""
    manifest = json.loads((directory / "manifest.json").read_text())
    config = manifest["server"]["mcp_config"]
    values = {name: user_config.get(name, field.get("default", "")) for name, field in manifest["user_config"].items()}

    def fill(text: str) -> str:
        text = text.replace("${__dirname}", str(directory))
        return PLACEHOLDER.sub(lambda m: str(values[m[1]]).lower() if isinstance(values[m[1]], bool) else str(values[m[1]]), text)

    return [config["command"], *map(fill, config["args"])], {var: fill(value) for var, value in config["env"].items()}


@pytest.mark.anyio
async def test_the_unpacked_bundle_starts_like_a_host_starts_it(built_bundle: Path, tmp_path: Path) -> None:
    from uv import find_uv_bin

    directory = tmp_path / "nonecap-mcp"
    with zipfile.ZipFile(built_bundle) as bundle:
        bundle.extractall(directory)
    base = host_env([Path(find_uv_bin()).parent], UV_PYTHON=sys.executable, UV_PYTHON_DOWNLOADS="never")

    command, env = host_command(directory, {"sandbox": True})
    async with launched(command, base | env, tmp_path / "sandbox.log") as agent:
        tools = (await agent.client.list_tools()).tools
        assert {tool.name for tool in tools} == {tool["name"] for tool in MANIFEST["tools"]}
        assert (await agent.ok("get_balance"))["sandbox"] is True
        assert (await agent.ok("create_solve", SOLVE))["status"] == "solved"

    # Nothing configured: every variable arrives empty, and empty means unset (not "0", not invalid).
    command, env = host_command(directory, {})
    assert env[API_KEY_ENV] == env["NONECAP_MAX_PRICE_USD"] == ""
    async with launched(command, base | env, tmp_path / "bare.log") as agent:
        text = await agent.error("get_balance")
    assert API_KEY_ENV in text and "auth login" in text and "malformed" not in text
