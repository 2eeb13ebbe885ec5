"""`ApiRequest`: one HTTP request as the endpoints see it (no socket; plain values and its interruption event)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApiRequest:
    """A request as the endpoints see it.

    `headers` has lower-cased names (the last of repeated headers wins), `client_ip` is the
    peer's address (the x402 rate limit is per IP) and `server_url` the sandbox's own base
    URL, e.g. ``http://127.0.0.1:54321`` (the x402 ``resource`` names it). `interrupted` is set
    when the sandbox resets or stops while the request is in flight (a slow solve then gives up).
    """

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    client_ip: str = ""
    server_url: str = ""
    interrupted: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name, or None."""
        return self.headers.get(name.lower())
