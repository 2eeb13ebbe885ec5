"""The deploy/ examples stay runnable: every command, flag and variable they use exists, and the unit starts.

compose.yaml is JSON-compatible YAML so that it is checked here without a YAML parser.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from child_process import child_env
from conftest import sandbox_env
from nonecap_mcp.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PACKAGE_SOURCE = "\n".join(p.read_text() for d in ("server", "tools") for p in (ROOT / d).rglob("*.py"))
CLI = [sys.executable, "-m", "nonecap_mcp"]


@functools.cache  # the same --help text for every service and test that asks; a process each costs ~0.1 s
def _help(*command: str) -> str:
    return subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, timeout=30, check=True).stdout


def _assert_serve_args(args: list[str]) -> None:
    """`args` start with `serve` and use only flags that `serve --help` lists."""
    assert args[0] == "serve"
    flags = {a.split("=")[0] for a in args if a.startswith("--")}
    listed = set(re.findall(r"--[a-z0-9-]+", _help("serve")))
    assert flags and flags <= listed, flags - listed


def _compose() -> dict:
    return json.loads((DEPLOY / "compose.yaml").read_text())


def _replicas() -> dict[str, dict]:
    return {name: s for name, s in _compose()["services"].items() if s.get("command", [None])[0] == "nonecap-mcp"}


def test_compose_runs_three_replicas_of_serve_http_on_postgres() -> None:
    compose = _compose()
    replicas = _replicas()
    assert len(replicas) == 3 and {"postgres", "caddy"} <= compose["services"].keys()
    for service in replicas.values():
        _assert_serve_args(service["command"][1:])
        assert "--http" in service["command"]
        assert service["environment"]["NONECAP_DATABASE_URL"].startswith("postgresql://")
        assert "postgres" in service["depends_on"]


def test_every_nonecap_variable_the_examples_set_is_one_the_server_reads() -> None:
    text = "".join(p.read_text() for p in DEPLOY.iterdir() if p.is_file())
    names = set(re.findall(r"\bNONECAP_[A-Z0-9_]+", text)) - {"NONECAP_PUBLIC_HOST"}  # compose/Caddy only
    assert {"NONECAP_API_KEY", "NONECAP_DATABASE_URL"} <= names
    assert all(f'"{name}"' in PACKAGE_SOURCE for name in names), [n for n in names if f'"{n}"' not in PACKAGE_SOURCE]


def test_no_secret_is_written_into_the_compose_file_or_the_unit() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "nc_live_" not in compose and "NONECAP_API_KEY" not in compose and '"env_file": [".env"]' in compose
    unit = re.sub(r"^#.*$", "", (DEPLOY / "nonecap-mcp@.service").read_text(), flags=re.M)
    assert "EnvironmentFile=/etc/nonecap-mcp/env" in unit
    assert "NONECAP_API_KEY" not in unit and "NONECAP_DATABASE_URL" not in unit and "postgresql://" not in unit


def test_caddy_balances_across_exactly_the_compose_replicas() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    upstreams = re.search(r"reverse_proxy /mcp\* ([^{]+)\{", caddyfile)
    assert upstreams
    ports = {s["command"][s["command"].index("--http") + 1].split(":")[1] for s in _replicas().values()}
    assert set(upstreams.group(1).split()) == {f"{name}:{port}" for name in _replicas() for port in ports}


def test_caddyfile_validates() -> None:
    caddy = shutil.which("caddy")
    if not caddy:
        pytest.skip("caddy is not installed on this machine")
    result = subprocess.run([caddy, "validate", "--adapter", "caddyfile", "--config", str(DEPLOY / "Caddyfile")],
                            env=child_env(NONECAP_PUBLIC_HOST="mcp.example.com"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _unit_exec_start(port: int) -> list[str]:
    unit = (DEPLOY / "nonecap-mcp@.service").read_text()
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart=").replace("%i", str(port)))


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed on this machine")
    binary = _unit_exec_start(0)[0]
    unit = (DEPLOY / "nonecap-mcp@.service").read_text().replace(binary, shutil.which("nonecap-mcp") or sys.executable)
    (tmp_path / "nonecap-mcp@8765.service").write_text(unit)
    result = subprocess.run([analyze, "verify", str(tmp_path / "nonecap-mcp@8765.service")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_systemd_exec_start_serves(_sandbox_server: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = _unit_exec_start(port)
    assert Path(command[0]).name == "nonecap-mcp"
    _assert_serve_args(command[1:])
    env = child_env(**sandbox_env(_sandbox_server, NONECAP_STATE_DIR=str(tmp_path)))
    process = subprocess.Popen([*CLI, *command[1:]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the unit's ExecStart did not come up"
            time.sleep(0.1)
        # The name the proxy forwards is answered too (the unit's --allowed-host).
        host = command[command.index("--allowed-host") + 1]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": host}, timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_vscode_http_config_takes_the_token_from_a_password_input() -> None:
    config = json.loads((DEPLOY / "vscode_mcp_http.json").read_text())
    server = config["servers"]["nonecap"]
    assert server["type"] == "http" and server["url"].startswith("https://") and server["url"].endswith("/mcp")
    token_input = re.fullmatch(r"Bearer \$\{input:([\w-]+)\}", server["headers"]["Authorization"])
    assert token_input
    assert {"type": "promptString", "id": token_input.group(1), "password": True}.items() <= next(
        i for i in config["inputs"] if i["id"] == token_input.group(1)).items()


def test_readme_deploy_section_uses_the_files_and_the_claude_http_form() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy"):]
    section = section[:section.index("\n## ", 1)]
    assert re.search(r'claude mcp add --transport http nonecap https://\S+/mcp --header "Authorization: Bearer \S+"', section)
    for name in ("compose.yaml", "Caddyfile", "nonecap-mcp@.service", "vscode_mcp_http.json", "env.example"):
        assert f"deploy/{name}" in section and (DEPLOY / name).is_file()
    assert "OAuth 2.1" in section and "TLS" in section
    for line in re.findall(r"^nonecap-mcp (clients add .*)$", section, flags=re.M):
        assert set(re.findall(r"--[a-z-]+", line)) <= set(re.findall(r"--[a-z0-9-]+", _help("clients", "add")))
