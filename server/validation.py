"""Checks on tool arguments that the JSON schema cannot express, run before anything is sent.

Each failure raises `InvalidArgumentError` naming the parameter. Messages never echo a
proxy string or object, because those carry passwords.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr

from nonecap_mcp.errors import InvalidArgumentError

PROXY_SCHEMES = ("http", "https", "socks4", "socks5")


class ProxyConfig(BaseModel):
    """A proxy in object form; the password is write-only and never shown back."""

    scheme: Literal["http", "https", "socks4", "socks5"] = "http"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None


def check_http_url(param: str, value: str) -> str:
    """An absolute http(s) URL with a host, as the API requires for url and webhook_url.

    urlsplit raises ValueError on some malformed URLs (`http://[abc/`); that is the
    model's mistake too, so it gets the same error naming the parameter.
    """
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(param, f"{param} must be an absolute http:// or https:// URL with a host.")
    return value.strip()


def _proxy_string(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if parts is None or parts.scheme not in PROXY_SCHEMES or not parts.hostname or port is None:
        raise InvalidArgumentError(
            "proxy", "proxy must look like scheme://user:pass@host:port with scheme http, https, socks4 or socks5 and a port."
        )
    if (parts.username is None) != (parts.password is None):
        raise InvalidArgumentError("proxy", "proxy credentials need both a username and a password (user:pass@).")
    return value.strip()


def _proxy_object(value: ProxyConfig) -> dict[str, Any]:
    if (value.username is None) != (value.password is None):
        raise InvalidArgumentError("proxy", "proxy.username and proxy.password must be given together.")
    body: dict[str, Any] = {"scheme": value.scheme, "host": value.host, "port": value.port}
    if value.username is not None and value.password is not None:
        body |= {"username": value.username, "password": value.password.get_secret_value()}
    return body


def check_proxy(value: str | ProxyConfig | None) -> str | dict[str, Any] | None:
    """The proxy in the wire form the API takes (string or object), or an error naming `proxy`."""
    if value is None:
        return None
    return _proxy_string(value) if isinstance(value, str) else _proxy_object(value)


def build_solve_body(
    *,
    type: str,
    sitekey: str,
    url: str,
    rqdata: str | None,
    user_agent: str | None,
    proxy: str | ProxyConfig | None,
    webhook_url: str | None,
) -> dict[str, Any]:
    """The POST /v1/solves body, after every check the API would make on it."""
    if not sitekey.strip():
        raise InvalidArgumentError("sitekey", "sitekey must not be empty.")
    body: dict[str, Any] = {"type": type, "sitekey": sitekey.strip(), "url": check_http_url("url", url)}
    optional = {
        "rqdata": rqdata,
        "user_agent": user_agent,
        "proxy": check_proxy(proxy),
        "webhook_url": check_http_url("webhook_url", webhook_url) if webhook_url else None,
    }
    return body | {k: v for k, v in optional.items() if v is not None}
