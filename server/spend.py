"""`nonecap-mcp spend`: what agents spent, per UTC day, rail and team-server client, from the local (or shared) store.

Credits come from the operator's counted starts (`quota`), x402 solves and USD from the x402
ledger (a start the rail's policy refused before signing is no solve), so the report shows
exactly what the limits saw. Printed on stdout: a CLI command, not the protocol.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from nonecap_mcp.config import LEDGER_FILE, Settings
from nonecap_mcp.quota import COUNTED, Quota
from nonecap_mcp.store import database_for, store_for
from nonecap_mcp.x402.ledger import open_ledger

USDC = Decimal(10) ** 6
BAR_WIDTH = 40


@dataclass
class DayRail:
    """One UTC day of one rail (and client, on a team server; None for stdio); `solved` is None
    where the store does not know it (credits)."""

    day: str
    rail: str
    client: str | None = None
    solves: int = 0
    solved: int | None = None
    credits: int = 0
    usd_settled: str = "0"
    usd_held: str = "0"
    usd_unknown: str = "0"


def _credits(settings: Settings, since: str) -> dict[tuple[str, str, str | None], DayRail]:
    db = database_for(settings)
    Quota(db)  # the table exists even before the first solve
    marks = ", ".join("?" for _ in COUNTED)
    with db.transaction() as cur:
        rows = cur.execute(f"SELECT utc_day, rail, client, COUNT(*) AS n, SUM(CASE WHEN credit_state IN ({marks}) THEN 1 "
                           "ELSE 0 END) AS credits FROM solve_starts WHERE utc_day >= ? AND rail = 'credits' "
                           "GROUP BY utc_day, rail, client",
                           (*COUNTED, since)).fetchall()
    return {(r["utc_day"], r["rail"], r["client"]): DayRail(r["utc_day"], r["rail"], r["client"], solves=int(r["n"]),
                                                             credits=int(r["credits"] or 0)) for r in rows}


def _x402(settings: Settings, since: str, report: dict[tuple[str, str, str | None], DayRail]) -> None:
    store = store_for(settings, LEDGER_FILE)
    if not store.exists():
        return
    for day in open_ledger(store).days_since(since):
        row = report.setdefault((day["day"], "x402", day["client"]), DayRail(day["day"], "x402", day["client"]))
        row.solves, row.solved = day["solves"], day["solved"]
        row.usd_settled, row.usd_held, row.usd_unknown = (str(Decimal(day[k]) / USDC) for k in ("settled", "held", "unknown"))


def collect(settings: Settings, days: int) -> list[DayRail]:
    """The last `days` UTC days (today included), oldest first."""
    since = (datetime.now(UTC).date() - timedelta(days=days - 1)).isoformat()
    report = _credits(settings, since)
    _x402(settings, since, report)
    return sorted(report.values(), key=lambda r: (r.day, r.rail, r.client or ""))


def render(rows: list[DayRail], out: TextIO, fmt: str) -> None:
    """JSON, CSV, or a table with a bar per row (credits, or USD settled for x402)."""
    if fmt == "json":
        json.dump([asdict(r) for r in rows], out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(DayRail.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        return
    if not rows:
        out.write("No solves in this period.\n")
        return
    size = {id(r): float(r.credits if r.rail == "credits" else Decimal(r.usd_settled)) for r in rows}
    top = {rail: max((size[id(r)] for r in rows if r.rail == rail), default=0) or 1 for rail in ("credits", "x402")}
    out.write(f"{'day':<10} {'rail':<7} {'client':<12} {'solves':>6} {'solved':>6} {'credits':>7} {'USD settled':>11} {'held':>8} {'unknown':>8}\n")
    for r in rows:
        bar = "#" * round(BAR_WIDTH * size[id(r)] / top[r.rail])
        solved = "-" if r.solved is None else str(r.solved)
        out.write(f"{r.day:<10} {r.rail:<7} {r.client or '-':<12} {r.solves:>6} {solved:>6} {r.credits:>7} {r.usd_settled:>11} "
                  f"{r.usd_held:>8} {r.usd_unknown:>8}  {bar}\n")


def run_spend(settings: Settings, days: int, fmt: str, out: TextIO) -> int:
    render(collect(settings, days), out, fmt)
    return 0
