"""x402 payment rail: pay per successful solve in USDC on Base.

The modules here decide whether a 402 may be paid (``policy``), know the canonical
USDC deployments (``networks``) and sign EIP-3009 authorizations (``signing``). Nothing
here imports eth_account at module import time, so server start-up does not pay for it.
"""
