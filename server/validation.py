"""Checks on tool arguments that the JSON schema cannot express, run before anything is sent.

Each failure raises `InvalidArgumentError` naming the parameter. Messages never echo a
proxy string or object, because those carry passwords; every proxy password is handed
to the redaction registry as soon as it is seen, so an upstream that echoes it back
cannot put it in a result or a log either.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nonecap_mcp.catalogue import IMAGE_TYPES, PaidRail
from nonecap_mcp.errors import InvalidArgumentError
from nonecap_mcp.redaction import remember_secret

PROXY_SCHEMES = ("http", "https", "socks4", "socks5")
# Bidirectional overrides and isolates: invisible, and able to make text read backwards.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_IMAGE_BYTES = 512 * 1024  # captcha pictures are a few KiB; this bounds what a call can carry
MAX_IMAGE_CHARS = (MAX_IMAGE_BYTES + 2) // 3 * 4 + 64  # its base64, with room for a data: URL prefix
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")  # WebP: RIFF....WEBP
_PROXY_FORMAT = "proxy must be exactly scheme://host:port or scheme://user:pass@host:port (scheme http, https, socks4 or socks5; no path, query or fragment)."


def _is_control(char: str) -> bool:
    """C0 (NUL, CR, LF, …), DEL, C1, line/paragraph separators and bidi controls."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def check_text(param: str, value: str) -> str:
    """`value` unless it holds a control character: no argument of ours needs one, and
    one in a url or sitekey could forge lines in a log or in the user's consent prompt."""
    if any(_is_control(char) for char in value):
        raise InvalidArgumentError(param, f"{param} must not contain control characters (newlines, NUL, tabs, escape or direction codes).")
    return value


def check_strings(arguments: Any, param: str = "arguments") -> None:
    """`check_text` on every string in a tool's arguments, nested ones included
    (`proxy.host`), each named by its path."""
    if isinstance(arguments, str):
        check_text(param, arguments)
    elif isinstance(arguments, dict):
        for key, value in arguments.items():
            check_strings(value, key if param == "arguments" else f"{param}.{key}")
    elif isinstance(arguments, list):
        for index, value in enumerate(arguments):
            check_strings(value, f"{param}[{index}]")


def is_ip_address(host: str) -> bool:
    """An IPv4 or IPv6 address, written bare (`2001:db8::1`, not bracketed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_host(param: str, host: str) -> str:
    """A hostname (RFC 1123 labels) or an IP literal, nothing else: no `/`, `@`, `:`
    port or spaces smuggled into what the API will dial."""
    if is_ip_address(host):
        return host
    name = host[:-1] if host.endswith(".") else host
    if not 0 < len(name) <= 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidArgumentError(param, f"{param} must be a hostname (letters, digits, hyphens and dots) or an IP address.")
    return host


class ProxyConfig(BaseModel):
    """A proxy in object form; the password is write-only and never shown back."""

    model_config = ConfigDict(extra="forbid")  # a mistyped `pasword` must not send the proxy without one

    scheme: Literal["http", "https", "socks4", "socks5"] = "http"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None


def check_http_url(param: str, value: str) -> str:
    """An absolute http(s) URL with a host and no whitespace, as the API requires for url
    and webhook_url (and as a user's consent prompt shows it).

    The host we check (the operator's allowlist, the consent prompt) must be the host a browser
    would load: so no backslash (a browser reads `https://evil.com\\@ok.com` as evil.com, urlsplit
    as ok.com), no user:password@ before the host, and no percent-escape inside it.
    urlsplit raises ValueError on some malformed URLs (`http://[abc/`); that is the
    model's mistake too, so it gets the same error naming the parameter.
    """
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(param, f"{param} must be an absolute http:// or https:// URL with a host.")
    if any(char.isspace() for char in url):
        raise InvalidArgumentError(param, f"{param} must not contain spaces; percent-encode them (%20).")
    if "\\" in url:
        raise InvalidArgumentError(param, f"{param} must not contain a backslash; write / or percent-encode it (%5C).")
    if "@" in parts.netloc or "%" in parts.netloc or (("[" in parts.netloc or "]" in parts.netloc) and not _ipv6_netloc(parts)):
        raise InvalidArgumentError(param, f"{param} must name its host plainly: no user:password@, no %-escapes and no "
                                          "brackets but around an IPv6 address.")
    return url


def _ipv6_netloc(parts: SplitResult) -> bool:
    """`[v6 address]` or `[v6 address]:port` and nothing else: urlsplit takes the bracket's
    content as the host even after other text (`evil.example[v1.ok.example]`)."""
    if not re.fullmatch(r"\[[0-9A-Fa-f:.]+\](?::[0-9]+)?", parts.netloc):
        return False
    try:
        ipaddress.IPv6Address(parts.hostname or "")
    except ValueError:
        return False
    return True


def _proxy_string(value: str) -> str:
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is not None and parts.password:
        remember_secret(parts.password)  # before anything else can fail, and decoded too
        remember_secret(unquote(parts.password))
    if (
        parts is None
        or parts.scheme not in PROXY_SCHEMES
        or not parts.hostname
        or not port
        or parts.path
        or parts.query
        or parts.fragment
        or "?" in text
        or "#" in text
    ):
        raise InvalidArgumentError("proxy", _PROXY_FORMAT)
    if "@" in parts.netloc and not (parts.username and parts.password):
        raise InvalidArgumentError("proxy", "proxy credentials need a non-empty username and password (user:pass@).")
    check_host("proxy", parts.hostname)
    return text


def _proxy_object(value: ProxyConfig) -> dict[str, Any]:
    password = value.password.get_secret_value() if value.password is not None else None
    remember_secret(password)
    if (value.username is None) != (password is None):
        raise InvalidArgumentError("proxy", "proxy.username and proxy.password must be given together.")
    if value.username == "" or password == "":
        raise InvalidArgumentError("proxy", "proxy.username and proxy.password must not be empty.")
    body: dict[str, Any] = {"scheme": value.scheme, "host": check_host("proxy.host", value.host), "port": value.port}
    if value.username is not None and password is not None:
        body |= {"username": value.username, "password": password}
    return body


def check_proxy(value: str | ProxyConfig | None) -> str | dict[str, Any] | None:
    """The proxy in the wire form the API takes (string or object), or an error naming `proxy`."""
    if value is None:
        return None
    return _proxy_string(value) if isinstance(value, str) else _proxy_object(value)


def check_image(value: str) -> str:
    """The image as plain base64 (a `data:image/...;base64,` prefix dropped), or an error
    naming `image`: garbage, an empty or oversized file, or something that is not a picture
    would only be paid for and fail upstream."""
    text = value.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise InvalidArgumentError("image", "image must be base64; a data: URL must be a ;base64, one.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError("image", "image must be the picture's bytes in standard base64 (A-Z a-z 0-9 + / =).") from None
    if not data or len(data) > MAX_IMAGE_BYTES:
        raise InvalidArgumentError("image", f"image must be 1 byte to {MAX_IMAGE_BYTES // 1024} KiB (it is {len(data)} bytes).")
    if not data.startswith(_IMAGE_MAGIC) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise InvalidArgumentError("image", "image must be a PNG, JPEG, GIF, WebP or BMP picture.")
    return text


def _refuse_unused(captcha_type: str, arguments: dict[str, Any]) -> None:
    """Name the first argument this captcha type does not take."""
    for param, value in arguments.items():
        if value is not None:
            needs = "only image" if captcha_type in IMAGE_TYPES else "sitekey and url, not image"
            raise InvalidArgumentError(param, f"type {captcha_type} takes {needs}; leave {param} out.")


def build_solve_body(
    *,
    type: str,
    sitekey: str | None,
    url: str | None,
    image: str | None = None,
    rqdata: str | None = None,
    user_agent: str | None = None,
    proxy: str | ProxyConfig | None = None,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """The solve body for the rail, after every check the rail would make on it (control
    characters were refused in every argument before this runs: `check_strings`).

    Token types take the page's sitekey and url (and the credits API's extras); image
    types take only the image."""
    if type in IMAGE_TYPES:
        _refuse_unused(type, {"sitekey": sitekey, "url": url, "rqdata": rqdata, "user_agent": user_agent,
                              "proxy": proxy, "webhook_url": webhook_url})
        if image is None:
            raise InvalidArgumentError("image", f"type {type} needs image: the captcha picture, base64.")
        return {"type": type, "image": check_image(image)}
    _refuse_unused(type, {"image": image})
    if sitekey is None or not sitekey.strip():
        raise InvalidArgumentError("sitekey", f"type {type} needs sitekey, the page's captcha sitekey.")
    if url is None:
        raise InvalidArgumentError("url", f"type {type} needs url, the page where the captcha appears.")
    body: dict[str, Any] = {"type": type, "sitekey": sitekey.strip(), "url": check_http_url("url", url)}
    optional = {
        "rqdata": rqdata,
        "user_agent": user_agent,
        "proxy": check_proxy(proxy),
        "webhook_url": check_http_url("webhook_url", webhook_url) if webhook_url else None,
    }
    return body | {k: v for k, v in optional.items() if v is not None}


@dataclass(frozen=True)
class SolveRequest:
    """One create_solve call, resolved once: its checked body, the rail that pays, and
    (x402) the price from the rail's published table, never from the arguments.

    Built before anything is asked or sent, and shared by the consent prompt and the
    tool body, so both see the same validated values.
    """

    body: MappingProxyType[str, Any]
    rail: PaidRail
    price_usd: Decimal | None = None  # x402 only
    started: float = 0.0  # monotonic time the call began: set-up time counts against its bound

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def sitekey(self) -> str | None:
        return self.body.get("sitekey")

    @property
    def url(self) -> str | None:
        """The page; None for an image type, which has none."""
        return self.body.get("url")

    @property
    def user_agent(self) -> str | None:
        return self.body.get("user_agent")

    def wire_body(self) -> dict[str, Any]:
        """A fresh copy of the body to send (the request itself stays unchanged)."""
        return dict(self.body)
