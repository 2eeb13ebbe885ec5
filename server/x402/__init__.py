"""x402 payment rail: pay per successful solve in USDC on Base.

Signing is irreversible, so the package keeps it behind one choke point: a 402 is parsed
and checked against the canonical USDC table, the published pricing and the operator's
spend policy before a key is touched. eth_account is imported only inside the functions
that sign or derive addresses, so server start-up does not pay for it.
"""
