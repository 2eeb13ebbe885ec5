"""Offline emulator of the NoneCap v1 REST API, for tests and `nonecap-mcp --sandbox`.

    from nonecap_mcp.sandbox import Sandbox

    with Sandbox() as sandbox:          # http://127.0.0.1:<free port>, key sandbox.api_key
        ...

It never contacts any site. Outcomes are driven by test sitekeys (`TEST_SITEKEYS`); faults
(`Sandbox.inject_fault`) reproduce 429/5xx and lost connections. See `Sandbox` for details.
"""

from nonecap_mcp.sandbox.emulator import Sandbox
from nonecap_mcp.sandbox.outcomes import TEST_SITEKEYS
from nonecap_mcp.sandbox.state import LOCKED_API_KEY, SANDBOX_API_KEY, RecordedRequest

__all__ = ["LOCKED_API_KEY", "SANDBOX_API_KEY", "TEST_SITEKEYS", "RecordedRequest", "Sandbox"]
