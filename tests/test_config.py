"""Operator settings: base URLs are parsed, not prefix-matched, timeouts are bounded, and the time
scale compresses only what the server chooses, only against the sandbox or loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nonecap_mcp.config import LEDGER_FILE, load_settings, state_dir
from nonecap_mcp.errors import ConfigurationError

BAD_BASES = [
    "http://localhost@evil.example",  # userinfo "localhost", host evil.example
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://evil.example",
    "https://user:pw-s3cret@api.nonecap.com",
    "http://user:pw-s3cret@localhost:8787",
    "ftp://localhost",
    "http://[abc",
    "http://localhost:99999",
    "https://",
    "api.nonecap.com",
]


@pytest.mark.parametrize("var", ["NONECAP_API_BASE", "NONECAP_X402_BASE"])
@pytest.mark.parametrize("url", BAD_BASES)
def test_base_urls_must_be_https_or_local_http_without_userinfo(var: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({var: url})
    assert caught.value.code == "invalid_config" and var in caught.value.message
    assert "s3cret" not in caught.value.message


@pytest.mark.parametrize("url", ["https://api.nonecap.com/", "http://127.0.0.1:8787", "http://localhost:8787", "http://[::1]:8787"])
def test_good_base_urls_are_accepted(url: str) -> None:
    assert load_settings({"NONECAP_API_BASE": url, "NONECAP_X402_BASE": url}).api_base == url.rstrip("/")


@pytest.mark.parametrize("timeout", ["0", "-1", "60.5", "inf", "nan"])
def test_keyring_timeout_is_bounded(timeout: str) -> None:
    with pytest.raises(ConfigurationError, match="NONECAP_KEYRING_TIMEOUT"):
        load_settings({"NONECAP_KEYRING_TIMEOUT": timeout})


@pytest.mark.parametrize("timeout", ["0.5", "60"])
def test_keyring_timeout_in_range_is_kept(timeout: str) -> None:
    assert load_settings({"NONECAP_KEYRING_TIMEOUT": timeout}).keyring_timeout == float(timeout)


def test_the_state_dir_is_the_setting_else_xdg_else_home(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert state_dir({"NONECAP_STATE_DIR": "/srv/nc", "XDG_STATE_HOME": "/x", "HOME": home}) == Path("/srv/nc")
    assert state_dir({"XDG_STATE_HOME": "/x", "HOME": home}) == Path("/x/nonecap-mcp")
    # Relative XDG paths are invalid per the spec; empty values count as unset.
    assert state_dir({"XDG_STATE_HOME": "rel", "NONECAP_STATE_DIR": " ", "HOME": home}) == tmp_path / ".local/state/nonecap-mcp"
    settings = load_settings({"NONECAP_STATE_DIR": "/srv/nc"})
    assert settings.ledger_path() == Path("/srv/nc") / LEDGER_FILE


# -- the time scale (a testing knob) ---------------------------------------------------

SANDBOX_UPSTREAMS = {"NONECAP_API_BASE": "http://127.0.0.1:8787", "NONECAP_X402_BASE": "http://127.0.0.1:8787",
                     "NONECAP_BASE_RPC_URL": "http://127.0.0.1:8787/rpc"}


@pytest.mark.parametrize("scale", ["0", "0.1", "-0.5", "1.5", "nan", "inf", "fast"])
def test_the_time_scale_is_a_fraction_of_real_time(scale: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"NONECAP_TIME_SCALE": scale, **SANDBOX_UPSTREAMS})
    assert caught.value.code == "invalid_config" and "NONECAP_TIME_SCALE" in caught.value.message


@pytest.mark.parametrize("upstream", ["NONECAP_API_BASE", "NONECAP_X402_BASE", "NONECAP_BASE_RPC_URL"])
def test_a_compressed_time_scale_is_refused_while_any_upstream_is_real(upstream: str) -> None:
    """A real API must never see our compressed bounds and backoff."""
    env = {**SANDBOX_UPSTREAMS, "NONECAP_TIME_SCALE": "0.5", upstream: "https://api.nonecap.com"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    assert caught.value.code == "invalid_config" and "NONECAP_TIME_SCALE" in caught.value.message
    assert upstream in caught.value.message
    assert load_settings({**env, "NONECAP_TIME_SCALE": "1"}).api_base  # real time goes anywhere


@pytest.mark.parametrize("env", [SANDBOX_UPSTREAMS | {"NONECAP_STATE_DIR": "/tmp/compressed-state"},
                                 {"NONECAP_SANDBOX": "1"}, {"NONECAP_SANDBOX_URL": "http://127.0.0.1:8787"}])
def test_a_compressed_time_scale_is_accepted_against_the_sandbox_or_loopback(env: dict[str, str]) -> None:
    load_settings({**env, "NONECAP_TIME_SCALE": "0.2"})


def test_a_compressed_time_scale_against_loopback_keeps_its_own_state() -> None:
    """At a fifth of real time, orphan and lease ages would misjudge a real server's payments in a shared ledger."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**SANDBOX_UPSTREAMS, "NONECAP_TIME_SCALE": "0.2"})
    assert "NONECAP_STATE_DIR" in caught.value.message


@pytest.mark.parametrize("command", [["doctor"], ["auth", "status"], ["wallet", "show"]])
def test_commands_that_reach_the_upstreams_themselves_refuse_compressed_time(command: list[str], tmp_path: Path) -> None:
    """Sandbox mode exempts only `serve`, which swaps every upstream for the sandbox's: doctor, auth and
    wallet use the configured ones, so NONECAP_SANDBOX=1 must not let a real API see compressed time."""
    env = {**os.environ, "NONECAP_TIME_SCALE": "0.2", "NONECAP_SANDBOX": "1", "NONECAP_STATE_DIR": str(tmp_path),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    done = subprocess.run([sys.executable, "-m", "nonecap_mcp", *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "NONECAP_TIME_SCALE below 1 is for the sandbox or loopback" in done.stderr, done


def test_one_knob_scales_every_duration_the_server_chooses_and_none_the_agent_gives() -> None:
    """In a process started at 0.5: the bounds' margins, the slot floor, the paid cap, backoff and
    the sandbox's solve time are halved; an agent's wait_seconds (5 here) and Retry-After as the
    server said it are not."""
    probe = (
        "import json; from nonecap_mcp.tools.errors import call_budget; from nonecap_mcp import credits_api, retry;"
        "from nonecap_mcp.x402 import client; from nonecap_mcp.sandbox import outcomes;"
        "print(json.dumps([call_budget(None), call_budget(5), credits_api.SLOT_WAIT_FLOOR_SECONDS, client.PAID_SECONDS,"
        " retry.RetryPolicy().delay(0, retry_after=10), outcomes.NORMAL_MS]))"
    )
    figures = {}
    for scale in ("1", "0.5"):
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NONECAP_TIME_SCALE": scale})
        assert ran.returncode == 0, ran.stderr
        figures[scale] = json.loads(ran.stdout)
    assert figures["1"] == [20, 15, 10, 75, 10, 1500]
    assert figures["0.5"] == [10, 10, 5, 37.5, 5, 750]
