"""Operator settings: base URLs are parsed, not prefix-matched, and timeouts are bounded."""

from __future__ import annotations

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
