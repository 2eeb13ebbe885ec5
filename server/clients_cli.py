"""`nonecap-mcp clients add | list | remove`: the HTTP server's callers, managed from a terminal.

`add` writes only the new token to stdout, so `TOKEN=$(nonecap-mcp clients add ci)`
captures exactly it; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation

from nonecap_mcp.clients import ClientRegistry
from nonecap_mcp.config import load_settings
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.store import database_for


def _budget(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ConfigurationError("invalid_config", "--daily-budget-usd must be a decimal amount like 0.50.") from None


def run(args: argparse.Namespace) -> int:
    registry = ClientRegistry(database_for(load_settings()))
    if args.clients_command == "add":
        token = registry.add(args.name, daily_budget_usd=_budget(args.daily_budget_usd),
                             daily_credit_budget=args.daily_credit_budget, read_only=args.read_only)
        print(token)
        print(f"client {args.name} added; its token is shown only this once (send it as Authorization: Bearer …)",
              file=sys.stderr)
        return 0
    if args.clients_command == "remove":
        if not registry.remove(args.name):
            print(f"no client named {args.name}", file=sys.stderr)
            return 1
        print(f"client {args.name} removed; its token no longer works", file=sys.stderr)
        return 0
    clients = registry.list()
    if not clients:
        print("no clients; add one with `nonecap-mcp clients add NAME`", file=sys.stderr)
    for client in clients:
        limits = [f"x402 ${client.daily_budget_usd}/day" if client.daily_budget_usd is not None else None,
                  f"{client.daily_credit_budget} credits/day" if client.daily_credit_budget is not None else None,
                  "read-only" if client.read_only else None]
        print(f"{client.name:<24} {', '.join(x for x in limits if x) or 'global limits'}  (added {client.created_at})")
    return 0
