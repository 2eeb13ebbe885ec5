"""Prometheus metrics of the team server, inert everywhere else.

The stdio server never calls `enable()`, so `prometheus_client` (the `team` extra) is neither
needed nor imported there; every recording function is then a cheap no-op. Labels are bounded
sets (tool names, rails, HTTP statuses, outcomes, registered client names): never an id or a url.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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


def solve_seen(rail: str, status: str, seconds: float) -> None:
    if _metrics:
        _metrics["solves"].labels(rail, status).observe(seconds)


def spent(rail: str, client: str | None, amount: Decimal | int) -> None:
    if _metrics:
        _metrics["spend"].labels(rail, client or "-").inc(float(amount))


def budget_left(rail: str, amount: Decimal | int | None) -> None:
    if _metrics and amount is not None:
        _metrics["budget_left"].labels(rail).set(float(amount))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_metrics["registry"]), CONTENT_TYPE_LATEST
