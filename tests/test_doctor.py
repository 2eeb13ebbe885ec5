"""`nonecap-mcp doctor`: one line per check, a fix for each failure, exit 0 only when the configured rails work.

Run with a fake HOME (never the user's hosts or keyring), against the shared sandbox on 127.0.0.1:
as the command in this process (`in_process.run_main`: the environment and output encoding its
process would have), and as the console script where the process is the promise (a Python without
the team extra's driver, whose exit status and report a script sees).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SECRETS, sandbox_env
from in_process import Ran, run_main
from keyring_backends import KEYRING_FILE_ENV

from nonecap_mcp.doctor import run_doctor
from nonecap_mcp.sandbox import SANDBOX_API_KEY, Sandbox

SCRIPT = str(Path(sys.executable).parent / "nonecap-mcp")
WRONG_KEY = "nc_live_" + "A" * 32


def doctor_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A fake HOME, no keyring, UTF-8 output, and `env`: what each doctor run gets, in a process or here."""
    return {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tests"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "PYTHONIOENCODING": "utf-8"} | env


def no_secret(result: subprocess.CompletedProcess[str] | Ran) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr, "doctor printed a secret"


def doctor_process(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`nonecap-mcp doctor` as its own process."""
    result = subprocess.run([SCRIPT, "doctor", *args], capture_output=True, text=True, env=doctor_env(tmp_path, **env), timeout=90)
    no_secret(result)
    return result


def doctor(tmp_path: Path, *args: str, **env: str) -> Ran:
    """`nonecap-mcp doctor` in this process, its output encoded as PYTHONIOENCODING says."""
    full = doctor_env(tmp_path, **env)
    result = run_main(["doctor", *args], full, encoding=full["PYTHONIOENCODING"])
    no_secret(result)
    return result


def lines(result: subprocess.CompletedProcess[str] | Ran, name: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line[2:].startswith(f"{name}:")]


def test_sandbox_doctor_is_green_and_prints_no_secret(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_doctor(sandbox=True, out=out, env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    text = out.getvalue()
    print(text)  # for the leak check
    assert code == 0, text
    for name in ("python", "api key", "wallet", "x402 rail", "state dir", "store"):
        assert f"✓ {name}: " in text, name
    assert "valid, account" in text and "100 credits" in text and "holds 5 USDC on base" in text
    assert "payTo 0x" in text and "HardCaptchaTokenProxyLess $0.012" in text
    assert text.rstrip().endswith("all configured rails work")


def test_the_shared_store_is_named_by_host_and_database_never_its_password(tmp_path: Path, sandbox: Sandbox,
                                                                          postgres_url: str) -> None:
    """Up (the session's PostgreSQL) and down: the same URL at a port where nothing listens, which is
    what a stopped server leaves (its connection refused), so the failure's message is checked too."""
    password = "pg-" + "S3cret" * 4
    url = postgres_url.replace("nonecap@", f"nonecap:{password}@")  # trust auth: any password is accepted
    result = doctor(tmp_path, **sandbox_env(sandbox, NONECAP_DATABASE_URL=url, NONECAP_STATE_DIR=str(tmp_path / "s")))
    out = result.stdout + result.stderr
    assert password not in out and "nonecap:" not in out
    port = url.split(":")[-1].split("/")[0]
    assert lines(result, "store") == [f"✓ store: PostgreSQL 127.0.0.1:{port}/postgres reachable"], result.stdout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down_url = url.replace(f":{port}/", f":{closed}/")
    down = doctor(tmp_path, **sandbox_env(sandbox, NONECAP_DATABASE_URL=down_url, NONECAP_STATE_DIR=str(tmp_path / "s")))
    assert password not in down.stdout + down.stderr
    assert lines(down, "store")[0].startswith(f"✗ store: PostgreSQL 127.0.0.1:{closed}/postgres unreachable ("), down.stdout
    assert down.returncode == 1


def test_a_postgresql_url_without_its_driver_says_which_extra_to_install(tmp_path: Path, sandbox: Sandbox) -> None:
    """A machine without the team extra: psycopg cannot be imported (a package that refuses to
    import stands in for the missing one), and doctor says what to install, not a traceback."""
    blocker = tmp_path / "no_driver" / "psycopg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('psycopg is not installed here')\n")
    result = doctor_process(tmp_path, **sandbox_env(sandbox, NONECAP_DATABASE_URL="postgresql://127.0.0.1:1/x",
                                                    NONECAP_STATE_DIR=str(tmp_path / "s")),
                            PYTHONPATH=f"{blocker.parent}:{ROOT / 'tests'}")
    [line] = lines(result, "store")
    assert line.startswith("✗ store: ") and "nonecap-mcp[team]" in line and "Traceback" not in result.stderr, result
    assert result.returncode == 1  # a store that cannot work fails the run, as a script sees it


def test_json_report(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--sandbox", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {c["name"]: c["status"] for c in report["checks"]}["wallet"] == "ok"


def test_a_rejected_key_fails_with_a_fix_and_exit_1(tmp_path: Path, sandbox: Sandbox) -> None:
    result = doctor(tmp_path, **sandbox_env(sandbox, NONECAP_API_KEY=WRONG_KEY))
    assert result.returncode == 1
    [line] = lines(result, "api key")
    assert line.startswith("✗ api key: nc_live_…AAAA (live mode, from NONECAP_API_KEY): GET /v1/me failed (unauthorized")
    fix = result.stdout.splitlines()[result.stdout.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix: `nonecap-mcp auth login`")


def test_credits_only_is_green_and_the_unconfigured_x402_rail_is_not_contacted(tmp_path: Path, sandbox: Sandbox) -> None:
    env = sandbox_env(sandbox)
    env["NONECAP_X402_BASE"] = "http://127.0.0.1:9"  # nothing listens there: would fail if it were contacted
    result = doctor(tmp_path, **env)
    assert result.returncode == 0, result.stdout
    assert lines(result, "wallet") == ["– wallet: not configured: the x402 rail is off"]
    assert lines(result, "x402 rail") == ["– x402 rail: not checked: no wallet configured"]
    assert [r.path for r in sandbox.requests] == ["/v1/me"]


def test_nothing_configured_is_exit_1_with_the_ways_to_configure(tmp_path: Path) -> None:
    result = doctor(tmp_path)
    assert result.returncode == 1
    assert lines(result, "rails")[0].startswith("✗ rails: no payment rail is configured")
    assert "auth login" in result.stdout and "wallet create" in result.stdout


def test_a_keyring_the_host_cannot_reach_is_named_with_its_fix(tmp_path: Path, sandbox: Sandbox) -> None:
    """The key is in a keyring that needs the session bus; hosts start servers without DBUS_*."""
    keyring_file = tmp_path / "kr.json"
    keyring_file.write_text(json.dumps({"nonecap-mcp\0api_key": SANDBOX_API_KEY}))
    env = sandbox_env(sandbox) | {"PYTHON_KEYRING_BACKEND": "keyring_backends.SessionBusKeyring", KEYRING_FILE_ENV: str(keyring_file),
                                  "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}
    del env["NONECAP_API_KEY"]
    result = doctor(tmp_path, **env)
    assert result.returncode == 1, result.stdout
    [line] = lines(result, "keyring")
    assert line.startswith("✗ keyring: keyring backends SessionBusKeyring here, but not reachable without DBUS_*")
    assert '"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"' in result.stdout
    assert lines(result, "api key")[0].startswith("✓ api key: nc_test_…only (test mode, from OS keyring): valid")

    env["NONECAP_API_KEY"] = SANDBOX_API_KEY  # the host config passes the key itself: nothing stranded
    assert doctor(tmp_path, **env).returncode == 0


def test_hosts_with_us_installed_and_a_dangling_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".cursor").mkdir(parents=True)
    (home / ".cursor" / "mcp.json").write_text(json.dumps({"mcpServers": {"nonecap": {"command": "/gone/bin/nonecap-mcp", "args": ["serve"]}}}))
    installed = run_main(["install", "claude-desktop"], {"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert installed.returncode == 0, installed.stderr
    result = doctor(tmp_path, "--sandbox")
    assert result.returncode == 0  # the sandbox run reports hosts but does not fail on them
    hosts = lines(result, "hosts")
    assert f'✓ hosts: Claude Desktop: "nonecap" runs {SCRIPT}' in hosts
    assert '✗ hosts: Cursor: "nonecap" runs /gone/bin/nonecap-mcp, which does not exist' in hosts
    assert "fix: `nonecap-mcp install cursor` again" in result.stdout
    assert doctor(tmp_path, **{"NONECAP_API_KEY": WRONG_KEY, "NONECAP_API_BASE": "http://127.0.0.1:9"}).returncode == 1


def test_plain_ascii_terminals_get_ascii_marks(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--sandbox", PYTHONIOENCODING="ascii")
    assert result.returncode == 0, result.stderr
    assert "[ok] wallet:" in result.stdout and "[ok] api key: nc_test_...only" in result.stdout


def test_payments_of_unknown_outcome_are_reported(tmp_path: Path, sandbox: Sandbox) -> None:
    from nonecap_mcp.sandbox import SANDBOX_PAY_TO, SANDBOX_WALLET_KEY
    from nonecap_mcp.x402.ledger import Ledger

    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    ledger.reserve_payment(nonce="0x" + "cd" * 32, solve_id="x402_01M8W2HS0WJA6Y4DSSJN98N22W", amount_atomic=12000,
                           pay_to=SANDBOX_PAY_TO, network="base", asset="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                           task_type="HardCaptchaTokenProxyLess", valid_before=0, daily_budget_atomic=10**6)
    ledger.mark_payment("0x" + "cd" * 32, "unknown")
    env = sandbox_env(sandbox, NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY, NONECAP_STATE_DIR=str(tmp_path / "state"))
    out = io.StringIO()
    code = run_doctor(env=env | {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}, out=out)
    print(out.getvalue())  # for the leak check
    assert "– state dir: ledger " in out.getvalue() and "1 payment(s) of unknown outcome waiting" in out.getvalue()
    assert code == 0  # waiting on an outcome is not a failure
