"""Solve ids: the one place that knows their prefixes and shape.

Credits solves carry the API's ids (`solve_…`); x402 solves get local ids (`x402_…`)
from the ledger. Both travel in URL paths and cursors, so an id is checked whole
(`fullmatch`: a trailing newline or a `/` never passes) before it is used anywhere.
"""

from __future__ import annotations

import re

from nonecap_mcp.errors import InvalidArgumentError

CREDITS_PREFIX = "solve_"
X402_PREFIX = "x402_"
SOLVE_ID = re.compile(rf"(?:{CREDITS_PREFIX}|{X402_PREFIX})[0-9A-Za-z]{{1,64}}")


def check_solve_id(value: str, param: str = "id") -> str:
    """A solve id safe to put in a URL path (no slashes, no query tricks, nothing after it)."""
    if not SOLVE_ID.fullmatch(value):
        raise InvalidArgumentError(param, f"{param} must be a solve id like solve_01HQF7K3JKWZX or x402_01HQF7K3JKWZX.")
    return value


def is_x402_id(solve_id: str) -> bool:
    """Whether an id names a local x402 solve (kept in the ledger) rather than a credits one."""
    return solve_id.startswith(X402_PREFIX)
