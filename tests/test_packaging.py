"""The package as PyPI and the MCP Registry see it: metadata, server.json, the built sdist and wheel.

The registry's schema is vendored byte for byte in tests/registry/ (see its README), so
these tests run offline; the wheel is installed into a fresh venv with uv, from the index.
"""

from __future__ import annotations

import copy
import email.parser
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from host_launch import host_env, launched
from jsonschema import Draft7Validator

from nonecap_mcp import __version__
from nonecap_mcp.config import ENV_VARS
from nonecap_mcp.tools.server import shipped_surface

SCHEMA = ROOT / "tests" / "registry" / "server.schema.json"
SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"
REGISTRY_NAME = "io.github.nonecap/nonecap-mcp"
SECRET_VARS = {"NONECAP_API_KEY", "NONECAP_WALLET_PRIVATE_KEY"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TOOLS = {tool["name"] for tool in shipped_surface("default")["tools"]}


def server_json() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "server.json").read_text())
    return document


def registry_validator() -> Draft7Validator:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored registry schema changed: see tests/registry/README.md"
    return Draft7Validator(json.loads(raw), format_checker=Draft7Validator.FORMAT_CHECKER)


def test_server_json_validates_against_the_registry_schema() -> None:
    validator = registry_validator()
    document = server_json()
    assert document["$schema"] == validator.schema["$id"]
    assert [error.message for error in validator.iter_errors(document)] == []
    # The validator really judges: what the registry refuses, it refuses.
    assert not validator.is_valid(document | {"description": "x" * 101})
    floating = copy.deepcopy(document)
    floating["packages"][0]["version"] = "latest"
    assert not validator.is_valid(floating)


def test_server_json_describes_this_package() -> None:
    document = server_json()
    [package] = document["packages"]
    assert document["name"] == REGISTRY_NAME
    assert (package["registryType"], package["identifier"], package["runtimeHint"]) == ("pypi", PROJECT["name"], "uvx")
    assert package["transport"] == {"type": "stdio"}
    assert document["version"] == package["version"] == __version__
    assert document["description"] == PROJECT["description"] and len(PROJECT["description"]) <= 100
    assert document["repository"]["url"] == PROJECT["urls"]["Repository"]
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert {name for name, v in variables.items() if v.get("isSecret")} == SECRET_VARS
    assert set(variables) <= SECRET_VARS | set(ENV_VARS.values()), "server.json names a variable the server does not read"
    # The registry proves a PyPI package is ours by this line in its README (the PyPI description).
    assert f"<!-- mcp-name: {REGISTRY_NAME} -->" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, exactly as the release workflow builds them.

    Without PYTHONDONTWRITEBYTECODE (this CI sets it): each PEP 517 hook is a fresh Python that
    imports setuptools, which uv leaves uncompiled in build's isolated environment, so with it set
    both hooks of each environment would compile setuptools again (~0.7 s of CPU); the release
    workflow's build runs without it too."""
    out = tmp_path_factory.mktemp("dist")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    with open(ROOT / "pyproject.toml") as lock:  # the sdist step writes *.egg-info into the tree: one build at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)],
            capture_output=True, text=True, timeout=300, env=env,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_distributions_pass_twine_check_with_complete_metadata(distributions: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions.values())],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        metadata = email.parser.Parser().parsestr(wheel.read(f"nonecap_mcp-{__version__}.dist-info/METADATA").decode())
    assert metadata["Version"] == __version__
    assert metadata["Summary"] == PROJECT["description"] and len(metadata["Summary"]) <= 100
    assert metadata["License-Expression"] == "MIT" and metadata["Author"] == "NoneCap"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL")} >= {"Homepage", "Repository", "Issues"}
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")
    assert {"mcp", "hcaptcha", "x402"} <= set(metadata["Keywords"].split(","))
    assert f"mcp-name: {REGISTRY_NAME}" in metadata.get_payload()


def test_distributions_hold_the_package_and_nothing_else(distributions: dict[str, Path]) -> None:
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(f"nonecap_mcp-{__version__}.dist-info/entry_points.txt").decode()
    assert all(n.startswith(("nonecap_mcp/", f"nonecap_mcp-{__version__}.dist-info/")) for n in names), names
    for module in ("cli.py", "tools/solves.py", "sandbox/emulator.py", "x402/ledger.py", "store/db.py"):
        assert f"nonecap_mcp/{module}" in names
    assert "nonecap-mcp = nonecap_mcp.cli:main" in entry_points
    with tarfile.open(distributions["sdist"]) as sdist:
        top = {Path(n).parts[1] for n in sdist.getnames() if len(Path(n).parts) > 1}
    assert top <= {"server", "tools", "nonecap_mcp.egg-info", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg", "PKG-INFO"}, top


@pytest.mark.anyio
async def test_the_wheel_in_a_clean_venv_serves_its_tools(distributions: dict[str, Path], tmp_path: Path) -> None:
    from uv import find_uv_bin

    uv, venv = find_uv_bin(), tmp_path / "venv"
    env = host_env(UV_PYTHON_DOWNLOADS="never")
    for command in ([uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                    [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(distributions["wheel"])]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    where = subprocess.run([venv / "bin" / "python", "-c", "import nonecap_mcp; print(nonecap_mcp.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the wheel's copy, not this source tree
    # The README's fresh-machine steps, from the installed wheel: install into a host's config, doctor.
    cli, config = str(venv / "bin" / "nonecap-mcp"), tmp_path / "claude_desktop_config.json"
    state = {"NONECAP_STATE_DIR": str(tmp_path / "state")}
    for step in ([cli, "install", "claude-desktop", "--config", str(config), "--sandbox"], [cli, "doctor", "--sandbox"]):
        done = subprocess.run(step, env=host_env(**state), capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    entry = json.loads(config.read_text())["mcpServers"]["nonecap"]
    assert entry["command"] == cli and entry["args"] == ["serve", "--sandbox"]
    async with launched([entry["command"], *entry["args"]], host_env(**state), tmp_path / "stderr.log") as agent:
        assert {tool.name for tool in (await agent.client.list_tools()).tools} == TOOLS
        solve = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 5})
    assert solve["status"] == "solved"
