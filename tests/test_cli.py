"""The `nonecap-mcp` console script as an operator uses it, with a clean env.

In subprocesses where the process is the promise (exit status and stdout as a host or script sees
them, a secret piped on stdin, a server that outlives or dies with its process, what a fresh
interpreter imports); in this process (`in_process.run_main`) where it is what a command does."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from typing import Any

import pytest
from conftest import ROOT, record
from in_process import Ran, environment, run_main
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from nonecap_mcp.cli import _settings, build_parser, serve_parser
from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools import build_server

SCRIPT = shutil.which("nonecap-mcp", path=str(Path(sys.executable).parent)) or "nonecap-mcp"
KEY = "nc_live_" + "Zz9_" * 8


def clean_env(**env: str) -> dict[str, str]:
    """An operator's environment: PATH, a HOME (none unless given), tests/ importable, and `env`."""
    base = {"PATH": os.environ["PATH"], "HOME": env.pop("HOME", "/nonexistent"), "PYTHONPATH": str(ROOT / "tests")}
    return base | env


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The console script in its own process."""
    return subprocess.run([SCRIPT, *args], input=stdin, capture_output=True, text=True, env=clean_env(**env), timeout=60)


def run_here(*args: str, stdin: str = "", **env: str) -> Ran:
    """The same command in this process, with the same environment."""
    return run_main(args, clean_env(**env), stdin=stdin)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["serve", "--help"], ["wallet", "--help"]])
def test_help_and_version_need_nothing_configured(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0 and result.stdout and not result.stderr


HEAVY_IMPORT_PROBE = (
    "import sys; from nonecap_mcp.config import load_settings; from nonecap_mcp.tools import build_server; "
    "import nonecap_mcp.auth_cli, nonecap_mcp.wallet_cli, nonecap_mcp.keystore; build_server(load_settings({})); "
    "print(sorted(m for m in ('eth_account', 'eth_keys', 'eth_abi', 'keyring', 'web3', 'nonecap', 'psycopg', "
    "'prometheus_client') if m in sys.modules))"
)


def test_start_up_and_cli_modules_import_nothing_heavy() -> None:
    """eth-account and keyring load only when a payment, a wallet or a credential needs them;
    psycopg and prometheus-client only on a team server (a PostgreSQL store, /metrics)."""
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
    """The key goes in on the stdin of a console-script process; the commands after it read and
    remove what that process stored (in this process: their behaviour, not the boundary again)."""
    env = {"PYTHON_KEYRING_BACKEND": "keyring_backends.MemoryKeyring", "NONECAP_TEST_KEYRING_FILE": str(tmp_path / "kr.json")}
    login = run("auth", "login", "--stdin", "--no-verify", stdin=KEY + "\n", **env)
    assert login.returncode == 0, login.stderr
    status = run_here("auth", "status", **env)
    assert status.returncode == 0 and "nc_live_…" + KEY[-4:] in status.stdout + status.stderr
    assert json.loads((tmp_path / "kr.json").read_text())  # really stored in the keyring backend
    logout = run_here("auth", "logout", **env)
    assert logout.returncode == 0
    assert run_here("auth", "status", **env).returncode == 1
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
    again = run_here("wallet", "create", **env)  # never silently replaces a funded key (the other process's)
    assert again.returncode == 1 and address in again.stderr and "nothing was changed" in again.stderr


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
    assert "nonecap-mcp install claude-desktop" in out and "uvx" not in out  # the ending points at install


def test_scripted_client_example_solves_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example file run as `python examples/scripted_client.py` runs it (as __main__, with only
    PATH and HOME), in this process: its code is what is tested here, and the server it starts over
    stdio is still a process of its own."""
    script = ROOT / "examples" / "scripted_client.py"
    monkeypatch.setattr(sys, "argv", [str(script)])
    out, err = io.StringIO(), io.StringIO()
    with environment({"PATH": os.environ["PATH"], "HOME": "/tmp"}), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0, err.getvalue()
    assert out.getvalue().strip().startswith("P1_SANDBOX_")


def test_example_host_configs_are_valid_json() -> None:
    for path in (ROOT / "examples").glob("*.json"):
        json.loads(path.read_text())


# --- short-lived server processes, as the Inspector CLI and mcp-cli run them (one call each) ---------------


def server_env(home: Path) -> dict[str, str]:
    """What a short-lived client gives the server it starts."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


async def one_session(args: list[str], home: Path, *calls: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """Start the server, make `calls` in order, stop it: a short-lived client's whole life (the
    Inspector CLI and mcp-cli make one call per process)."""
    params = StdioServerParameters(command=SCRIPT, args=args, env=server_env(home))
    with open(os.devnull, "w") as quiet:
        async with Client(stdio_client(params, errlog=quiet), mode="legacy") as client:
            return [record(await client.call_tool(name, arguments)) for name, arguments in calls]


async def session_here(args: list[str], home: Path, *calls: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """`one_session`'s server built in this process instead (the command line's settings, the same
    environment), closed when it returns: the other end of a test whose promise is what a
    separate process then sees, not what this one does."""
    with environment(server_env(home)):
        settings = _settings(serve_parser().parse_args(args[1:]))
        async with Client(build_server(settings), mode="legacy") as client:
            return [record(await client.call_tool(name, arguments)) for name, arguments in calls]


@pytest.mark.anyio
async def test_sandbox_url_lets_solves_outlive_the_process(sandbox: Sandbox, tmp_path: Path) -> None:
    args = ["serve", "--sandbox-url", sandbox.url, "--state-dir", str(tmp_path / "state")]
    solve = {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 10}
    rails = ("credits", "x402")
    created = await session_here(args, tmp_path, *(("create_solve", solve | {"rail": rail}) for rail in rails))
    assert all(result.structured_content is not None for result in created), [result.content for result in created]
    ids = [result.structured_content["id"] for result in created]  # type: ignore[index]
    again = await one_session(args, tmp_path, *(("get_solve", {"id": solve_id, "wait_seconds": 20}) for solve_id in ids))
    for rail, result in zip(rails, again):  # each read by a process that did not create it
        assert result.structured_content is not None, (rail, result.content)
        assert result.structured_content["status"] == "solved" and result.structured_content["token"].startswith("P1_SANDBOX_")
        assert result.structured_content["rail"] == rail
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()  # sandbox payments stay out of the real ledger


@pytest.mark.anyio
async def test_a_per_process_sandbox_says_its_solves_die_with_it(tmp_path: Path) -> None:
    solve = {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 10}
    [created] = await session_here(["serve", "--sandbox"], tmp_path, ("create_solve", solve))
    assert created.structured_content is not None
    [gone] = await one_session(["serve", "--sandbox"], tmp_path, ("get_solve", {"id": created.structured_content["id"]}))
    text = gone.content[0].text  # type: ignore[union-attr]
    assert gone.is_error and "only as long as the process" in text and "--sandbox-url" in text
    assert "30 days" not in text and "30-day" not in text


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--state-dir", "relative/dir", "NONECAP_STATE_DIR must be an absolute path"),
    ("--base-rpc-url", "http://rpc.example/", "NONECAP_BASE_RPC_URL must be an https:// URL"),
    ("--sandbox-url", "https://sandbox.example", "NONECAP_SANDBOX_URL must point at a `nonecap-mcp sandbox` on this machine"),
])
def test_new_flags_are_validated_settings(flag: str, value: str, message: str) -> None:
    result = run_here("serve", flag, value)
    assert result.returncode == 2 and result.stderr.startswith(f"nonecap-mcp: {message}")
    assert flag in run_here("serve", "--help").stdout


def test_state_dir_and_rpc_url_flags_win_over_the_environment() -> None:
    settings = _settings(build_parser().parse_args(["serve", "--state-dir", "/srv/nc", "--base-rpc-url", "https://rpc.example/k"]))
    assert settings.ledger_path() == Path("/srv/nc/ledger.sqlite3") and settings.rpc_url() == "https://rpc.example/k"
    from_env = load_settings({"NONECAP_STATE_DIR": "~/nc", "HOME": "/h"})
    assert from_env.ledger_path() == Path("~/nc").expanduser() / "ledger.sqlite3"
