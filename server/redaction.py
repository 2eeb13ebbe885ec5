"""Scrubs secrets out of any text before it can reach a tool result, an error or a log line.

The key material should never get near text in the first place; this is the second
line of defence for text we do not control (upstream messages that echo what we sent,
exception strings). Two nets: patterns for secrets of a known shape (API keys, bearer
tokens, URL passwords, 32-byte hex keys, signed payment headers), and a process-wide
registry of the exact secrets this process was handed (the API key and wallet key as
they are wrapped in a `Secret`, every proxy password as it is parsed), so a password
of no particular shape, echoed in a 422 message or a failed solve's error, is caught too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote

_API_KEY = re.compile(r"\bnc_(live|test)_[A-Za-z0-9_-]{4,}")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_PRIVATE_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
# An x402 X-PAYMENT header is base64 JSON carrying a signed authorization, spendable by
# whoever holds it until it expires; a rail error body may echo it back to us.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")

MASK = "[redacted]"
# Shorter "secrets" are not worth the damage of masking them wherever they occur in
# ordinary text (a 3-letter password would mask every word containing it).
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _forms(secret: str) -> set[str]:
    """The ways a secret can appear in text: as given, percent-encoded (a proxy URL),
    percent-decoded, form-encoded, and escaped inside a JSON string."""
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def remember_secret(secret: str | None) -> None:
    """Add a secret (in every form it can be echoed in) to what `redact` masks, for the
    life of the process. Called where secrets enter: `credentials.Secret` and proxy parsing."""
    if not secret:
        return
    global _pattern
    forms = _forms(secret)
    with _lock:
        if forms <= _known:
            return
        _known.update(forms)
        # Longest first, so a secret that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(form) for form in sorted(_known, key=len, reverse=True)))


def redact_secrets(text: str) -> str:
    """Mask what is certainly a secret: API keys, bearer tokens, URL passwords and every
    secret this process knows. Safe on data (tokens, transaction hashes stay intact)."""
    text = _API_KEY.sub(lambda m: f"nc_{m.group(1)}_…{m.group(0)[-4:]}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    known = _pattern
    return known.sub(MASK, text) if known is not None else text


def redact(text: str) -> str:
    """`redact_secrets`, and also anything shaped like a 32-byte hex key or a signed
    payment header (long base64): for messages and logs, where such runs are never data
    an agent needs, unlike a result's transaction hash or captcha token."""
    text = _PRIVATE_KEY.sub("[redacted-hex]", redact_secrets(text))
    return _LONG_BASE64.sub("[redacted-base64]", text)


def redact_tree(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with `redact_secrets` applied to
    every string; dict keys are ours (schema field names) and stay as they are."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {key: redact_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_tree(item) for item in value]
    return value


class RedactingFormatter(logging.Formatter):
    """Formatter that redacts its whole output: message, exception traceback and stack.

    A filter only sees the message; exception text is formatted later, by the formatter,
    and an exception's message can carry a key just as well as a log message can.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
