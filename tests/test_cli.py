"""The `nonecap-mcp` console script as an operator uses it, in subprocesses with a clean env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SCRIPT = shutil.which("nonecap-mcp", path=str(Path(sys.executable).parent)) or "nonecap-mcp"
KEY = "nc_live_" + "Zz9_" * 8


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": env.pop("HOME", "/nonexistent"), "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run([SCRIPT, *args], input=stdin, capture_output=True, text=True, env=base | env, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["serve", "--help"], ["wallet", "--help"]])
def test_help_and_version_need_nothing_configured(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0 and result.stdout and not result.stderr


HEAVY_IMPORT_PROBE = (
    "import sys; from nonecap_mcp.config import load_settings; from nonecap_mcp.tools import build_server; "
    "import nonecap_mcp.auth_cli, nonecap_mcp.wallet_cli, nonecap_mcp.keystore; build_server(load_settings({})); "
    "print(sorted(m for m in ('eth_account', 'eth_keys', 'eth_abi', 'keyring', 'web3') if m in sys.modules))"
)


def test_start_up_and_cli_modules_import_nothing_heavy() -> None:
    """eth-account and keyring load only when a payment, a wallet or a credential needs them."""
    result = subprocess.run([sys.executable, "-c", HEAVY_IMPORT_PROBE], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "nonecap_mcp", "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == run("--version").stdout.strip()


def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    result = run(NONECAP_MAX_CONCURRENCY="lots")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "nonecap-mcp: NONECAP_MAX_CONCURRENCY must be a whole number."


def test_auth_round_trip_through_the_console_script(tmp_path: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyring_backends.MemoryKeyring", "NONECAP_TEST_KEYRING_FILE": str(tmp_path / "kr.json")}
    login = run("auth", "login", "--stdin", "--no-verify", stdin=KEY + "\n", **env)
    assert login.returncode == 0, login.stderr
    status = run("auth", "status", **env)
    assert status.returncode == 0 and "nc_live_…" + KEY[-4:] in status.stdout + status.stderr
    assert json.loads((tmp_path / "kr.json").read_text())  # really stored in the keyring backend
    logout = run("auth", "logout", **env)
    assert logout.returncode == 0
    assert run("auth", "status", **env).returncode == 1
    for result in (login, status, logout):
        assert KEY not in result.stdout + result.stderr


def test_wallet_create_prints_only_an_address(tmp_path: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyring_backends.MemoryKeyring", "NONECAP_TEST_KEYRING_FILE": str(tmp_path / "kr.json")}
    created = run("wallet", "create", **env)
    assert created.returncode == 0, created.stderr
    address = created.stdout.strip()
    assert address.startswith("0x") and len(address) == 42
    stored = "".join(json.loads((tmp_path / "kr.json").read_text()).values())
    assert stored[-64:] not in created.stdout + created.stderr
    assert run("wallet", "create", **env).returncode != 0  # never silently replaces a funded key


def test_demo_drives_the_whole_product_offline() -> None:
    """The README's first command: every step an agent takes, through a real stdio MCP session."""
    result = run("demo", HOME="/tmp")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ('== tools/list', '"status": "solved"', '"action": "retry_with_new_proxy"', '"status": "cancelled"',
                     "conflict (HTTP 409", '"rail": "x402"', '"cost_usd": "0.012"', '"settlement_tx": "0x',
                     '"credits_balance": 99', '"usdc_balance": "4.988"'):
        assert expected in out, expected
    assert "_NOT_A_REAL_HCAPTCHA_TOKEN" in out


def test_scripted_client_example_solves_in_the_sandbox() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "scripted_client.py")], capture_output=True,
                            text=True, timeout=120, env={"PATH": os.environ["PATH"], "HOME": "/tmp"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("P1_SANDBOX_")


def test_example_host_configs_are_valid_json() -> None:
    for path in (ROOT / "examples").glob("*.json"):
        json.loads(path.read_text())
