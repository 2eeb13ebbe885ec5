"""What the operator allows agents to do, whatever they ask: which sites, which captcha types.

Checked before anything is sent or reserved, so a refused call costs nothing and leaves no
trace upstream. The spending limits that need counting (credits per day, solves per minute)
live in `quota`, since they must hold across processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from nonecap_mcp.errors import NoneCapError


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip().lower().rstrip(".") for part in (raw or "").split(",") if part.strip())


@dataclass(frozen=True)
class SitePolicy:
    """NONECAP_ALLOWED_SITES and NONECAP_ALLOWED_TYPES, parsed once at start-up."""

    allowed_sites: tuple[str, ...] = ()  # hostnames and "*.domain" wildcards; empty = any site
    allowed_types: tuple[str, ...] = ()  # create_solve types; empty = any type

    @classmethod
    def parse(cls, sites: str | None, types: str | None) -> SitePolicy:
        policy = cls(_names(sites), _names(types))
        for pattern in policy.allowed_sites:
            bare = pattern.removeprefix("*.")
            if not bare or "*" in bare or "/" in bare or ":" in bare:
                raise ValueError(f"NONECAP_ALLOWED_SITES entry {pattern!r} is not a hostname or *.domain")
        return policy

    def site_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.allowed_sites:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and host != pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return not self.allowed_sites

    def check(self, captcha_type: str, url: str | None) -> None:
        """Refuse, naming the parameter, a type or site the operator did not allow."""
        if self.allowed_types and captcha_type not in self.allowed_types:
            raise NoneCapError("type_not_allowed", f"The operator allows only these captcha types: "
                               f"{', '.join(self.allowed_types)} (NONECAP_ALLOWED_TYPES).", param="type")
        if url is not None and self.allowed_sites:
            host = urlsplit(url).hostname or ""
            if not self.site_allowed(host):
                raise NoneCapError(
                    "site_not_allowed", f"The operator does not allow solves for {host or 'this url'}; allowed: "
                    f"{', '.join(self.allowed_sites)} (NONECAP_ALLOWED_SITES).", param="url")
