"""The NoneCap API key: format check, masking, and resolution.

Resolution order is the usual one for CLIs and MCP servers: the
``NONECAP_API_KEY`` environment variable (what MCP hosts pass through a
server's ``env`` block) wins, then the OS keyring (filled by
``nonecap-mcp auth login``). The key travels as a :class:`Secret` so that
logging, tracebacks and reprs cannot print it by accident.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping

from . import keystore
from .redaction import remember_secret

__all__ = [
    "API_KEY_ENV",
    "API_KEY_NAME",
    "API_KEY_PATTERN",
    "NO_KEY_MESSAGE",
    "CredentialError",
    "Secret",
    "api_key_from_env",
    "check_api_key_format",
    "key_mode",
    "mask_api_key",
    "resolve_api_key",
]

API_KEY_ENV = "NONECAP_API_KEY"
API_KEY_NAME = "api_key"  # keyring username under service keystore.SERVICE
API_KEY_PATTERN = re.compile(r"^nc_(live|test)_[A-Za-z0-9_-]{32}$")

_PREFIX_PATTERN = re.compile(r"^nc_(live|test)_")
_BODY_LENGTH = 32
_EXPECTED = "nc_live_ or nc_test_ followed by 32 characters from A-Z, a-z, 0-9, '_' and '-'"
# Shown whenever no key is found anywhere (server and `auth status`).
NO_KEY_MESSAGE = (
    f"No NoneCap API key is configured. Set {API_KEY_ENV} in the MCP server's env, "
    "or run `nonecap-mcp auth login` in a terminal. "
    "Try everything offline with `nonecap-mcp serve --sandbox`."
)


class CredentialError(Exception):
    """No usable API key. The message says how to set one and never contains
    the key itself; `code` says which kind of problem it is:
    `missing_api_key` (none anywhere), `keyring_unavailable` (no env var and no keyring
    reachable from this process, so nothing can have been stored), `keyring_error`
    (a keyring that is locked, broken or silent) or `invalid_api_key`."""

    def __init__(self, message: str, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.code = code


class Secret:
    """A secret string that does not show itself.

    ``str``, ``repr``, f-strings and ``%`` formatting all give ``***`` (not even
    the length), so a Secret that ends up in a log line, a traceback or a tool
    result leaks nothing. Call :meth:`reveal` at the one place the value is
    needed (the ``Authorization`` header). Every value wrapped is also known to
    ``redaction.redact`` for the life of the process.
    """

    __slots__ = ("_value",)
    _MASK = "***"

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value
        remember_secret(value)  # so text echoed back by an upstream is masked too

    def reveal(self) -> str:
        """The secret value itself; keep it out of logs and messages."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._MASK!r})"

    def __str__(self) -> str:
        return self._MASK

    def __format__(self, format_spec: str) -> str:
        return format(self._MASK, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    # A hash of the value would be a cheap oracle for guessing it; Secrets do
    # not go into sets or dict keys.
    __hash__ = None  # type: ignore[assignment]


def mask_api_key(key: str) -> str:
    """Show enough of a key to tell keys apart, never enough to use it.

    A well-formed key keeps its prefix and last 4 characters
    (``nc_live_…abcd``); anything else keeps at most its last 2 (``…cd``),
    and short strings become ``***``.
    """
    key = key.strip()
    match = API_KEY_PATTERN.match(key)
    if match:
        return f"nc_{match.group(1)}_…{key[-4:]}"
    if len(key) >= 12:
        return f"…{key[-2:]}"
    return "***"


def _format_problem(key: str) -> str:
    """Say what is wrong with a malformed key without repeating any of it."""
    if key[:1] in {'"', "'"}:
        return "it is wrapped in quotes; remove them"
    if key.startswith(("$", "<")) or "{" in key:
        return "it looks like an unexpanded placeholder, not a key"
    if any(ch.isspace() for ch in key):
        return "it contains whitespace; copy it again without line breaks or spaces"
    if not _PREFIX_PATTERN.match(key):
        return "it does not start with nc_live_ or nc_test_"
    body = _PREFIX_PATTERN.sub("", key)
    if len(body) != _BODY_LENGTH:
        return f"it has {len(body)} characters after the prefix instead of {_BODY_LENGTH}"
    return "it contains characters other than A-Z, a-z, 0-9, '_' and '-'"


def check_api_key_format(key: str, *, source: str | None = None) -> str:
    """Return ``key`` without surrounding whitespace, or raise.

    ``source`` names where the key came from (e.g. ``"NONECAP_API_KEY"``)
    so the user knows what to fix. The error never echoes the key: a
    malformed key is still usually a real key with a copy-paste slip.
    """
    stripped = key.strip()
    if API_KEY_PATTERN.match(stripped):
        return stripped
    where = f" in {source}" if source else ""
    raise CredentialError(
        f"The NoneCap API key{where} is malformed: {_format_problem(stripped)}. Expected {_EXPECTED}."
    )


def key_mode(key: str) -> str:
    """``"live"`` or ``"test"``, from the key prefix (as Stripe does with
    ``sk_live_``/``sk_test_``). Raises :class:`CredentialError` if malformed."""
    return check_api_key_format(key)[3:7]  # "nc_" + "live"/"test" + "_"


def api_key_from_env(env: Mapping[str, str] | None = None) -> Secret | None:
    """The key from ``NONECAP_API_KEY``, or ``None`` when unset.

    Empty or whitespace-only counts as unset: MCP host configs often carry
    ``"NONECAP_API_KEY": ""`` templates, and those should fall through to the
    keyring rather than fail.
    """
    raw = (os.environ if env is None else env).get(API_KEY_ENV, "")
    if not raw.strip():
        return None
    return Secret(check_api_key_format(raw, source=API_KEY_ENV))


async def resolve_api_key(env: Mapping[str, str] | None = None, *, timeout: float = 5.0) -> Secret:
    """The API key to use: ``NONECAP_API_KEY`` if set, else the OS keyring.

    Raises :class:`CredentialError` when there is no key, a key is malformed,
    or the keyring fails or does not answer within ``timeout`` seconds.
    """
    from_env = api_key_from_env(env)
    if from_env is not None:
        return from_env
    try:
        stored = await keystore.read_secret(API_KEY_NAME, timeout=timeout)
    except keystore.KeystoreError as exc:
        raise CredentialError(
            f"Could not read the NoneCap API key from the OS keyring: {exc} "
            f"Set {API_KEY_ENV} in the MCP server's env instead; it takes precedence "
            "over the keyring.",
            "keyring_unavailable" if isinstance(exc, keystore.KeyringUnavailable) else "keyring_error",
        ) from None
    if stored is None or not stored.strip():
        raise CredentialError(NO_KEY_MESSAGE, "missing_api_key")
    try:
        return Secret(check_api_key_format(stored, source="the OS keyring"))
    except CredentialError as exc:
        raise CredentialError(f"{exc} Run `nonecap-mcp auth login` to replace it, or set {API_KEY_ENV}.") from None
