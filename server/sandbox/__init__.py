"""Offline emulator of the NoneCap v1 REST API, for tests and `nonecap-mcp --sandbox`.

    from nonecap_mcp.sandbox import Sandbox

    with Sandbox() as sandbox:          # http://127.0.0.1:<free port>, key sandbox.api_key
        ...

It never contacts any site. Outcomes are driven by test sitekeys (`TEST_SITEKEYS`), on the
credits API and on the x402 rail alike; faults (`Sandbox.inject_fault`) reproduce 429/5xx
and lost connections. The x402 rail is paid from `SANDBOX_WALLET_KEY` (5.00 pretend USDC)
to `SANDBOX_PAY_TO` at `X402_PRICES_USD`. See `Sandbox` and `nonecap_mcp.sandbox.x402`.
"""

from nonecap_mcp.sandbox.chain import SANDBOX_WALLET_ADDRESS, SANDBOX_WALLET_KEY, Settlement
from nonecap_mcp.sandbox.emulator import Sandbox
from nonecap_mcp.sandbox.outcomes import TEST_SITEKEYS
from nonecap_mcp.sandbox.state import LOCKED_API_KEY, SANDBOX_API_KEY, RecordedRequest
from nonecap_mcp.sandbox.x402 import SANDBOX_PAY_TO, X402_PRICES_USD, PaymentAttempt

__all__ = [
    "LOCKED_API_KEY",
    "SANDBOX_API_KEY",
    "SANDBOX_PAY_TO",
    "SANDBOX_WALLET_ADDRESS",
    "SANDBOX_WALLET_KEY",
    "TEST_SITEKEYS",
    "X402_PRICES_USD",
    "PaymentAttempt",
    "RecordedRequest",
    "Sandbox",
    "Settlement",
]
