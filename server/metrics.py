"""Prometheus metrics of the team server, inert everywhere else.

The stdio server never calls `enable()`, so `prometheus_client` (the `team` extra) is neither
needed nor imported there; every recording function is then a cheap no-op. Labels are bounded
sets (tool names, rails, HTTP statuses, outcomes, registered client names): never an id or a url.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T", Decimal, int, None)

if TYPE_CHECKING:
    from nonecap_mcp.models import Solve

_metrics: dict[str, Any] = {}


def enable() -> None:
    """Create the metrics in a private registry (idempotent)."""
    if _metrics:
        return
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    _metrics.update(
        registry=registry,
        tool_calls=Counter("nonecap_tool_calls", "MCP tool calls", ["tool", "outcome"], registry=registry),
        tool_seconds=Histogram("nonecap_tool_call_seconds", "MCP tool call latency", ["tool"], registry=registry,
                               buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 25, 55, 70)),
        upstream=Counter("nonecap_upstream_requests", "Requests to NoneCap and the x402 rail", ["rail", "status"],
                         registry=registry),
        solves=Histogram("nonecap_solve_seconds", "Time from create to a terminal solve seen by a call",
                         ["rail", "status"], registry=registry, buckets=(1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120)),
        spend=Counter("nonecap_spend", "Spent: credits, or USD settled on x402", ["rail", "client"], registry=registry),
        budget_left=Gauge("nonecap_budget_left", "What today's budget still allows (credits or USD)", ["rail"],
                          registry=registry),
    )


def enabled() -> bool:
    return bool(_metrics)


def tool_call(tool: str, outcome: str, seconds: float) -> None:
    if _metrics:
        _metrics["tool_calls"].labels(tool, outcome).inc()
        _metrics["tool_seconds"].labels(tool).observe(seconds)


def upstream(rail: str, status: int | str) -> None:
    if _metrics:
        _metrics["upstream"].labels(rail, str(status)).inc()


def finished(solve: Solve) -> None:
    """A solve first seen finished: its create-to-finish time, and what it cost if solved (a
    credit, or the USDC settled; failed solves are refunded or never paid)."""
    if not _metrics:
        return
    rail = "x402" if solve.rail == "x402" else "credits"
    try:
        seconds = (datetime.fromisoformat(solve.finished_at or "") - datetime.fromisoformat(solve.created_at or "")).total_seconds()
        _metrics["solves"].labels(rail, solve.status).observe(max(0.0, seconds))
    except ValueError:  # a timestamp missing or unreadable: no latency to tell
        pass
    if solve.status == "solved":
        cost = Decimal(solve.cost_usd or 0) if rail == "x402" else Decimal(1)
        _metrics["spend"].labels(rail, solve.client or "-").inc(float(cost))


def budget_left(rail: str, amount: T) -> T:
    """Record what today's budget still allows (None: no budget) and hand the figure back."""
    if _metrics and amount is not None:
        _metrics["budget_left"].labels(rail).set(float(amount))
    return amount


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_metrics["registry"]), CONTENT_TYPE_LATEST
