"""The bench report as a Markdown table (BENCHMARKS.md, the README), from its JSON form.

Working from the JSON (``agency-rls bench --format json``) rather than the report object lets a
saved run be rendered again later, on another machine, without the database.
"""

from __future__ import annotations

from typing import Any

#: Ratio targets of issue 9 (RLS / hand-written): marked in the table when exceeded.
P50_TARGET = 1.10
P95_TARGET = 1.25


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _ratio(value: float | None, target: float) -> str:
    if value is None:
        return "—"
    text = f"{value:,.2f}"
    return f"**{text}**" if value > target else text


def _flag(flag: Any) -> str:
    """A plan flag as text: the JSON holds {kind, where, detail}."""
    if isinstance(flag, dict):
        return str(flag.get("detail") or flag.get("kind") or flag)
    return str(flag)


def markdown_from_json(data: dict[str, Any]) -> str:
    """One header block and one table row per principal and query."""
    world = ", ".join(f"{name} {int(rows):,}" for name, rows in data.get("world", {}).items())
    lines = [
        f"PostgreSQL {data.get('server_version', '?')}; {data.get('machine', '?')}; {data.get('rounds')} timed rounds"
        f" after {data.get('warmup')} warm-up rounds; world (reltuples): {world}.",
        "",
        f"Times in ms (statement only). Ratio = RLS / hand-written; **bold** above {P50_TARGET} (p50) or"
        f" {P95_TARGET} (p95). Buffers = shared hit + read of one execution. API overhead per transaction"
        f" (checkout, SET LOCAL ROLE with the principal check, commit): {_ms(data.get('api_overhead_p50_ms'))} ms.",
        "",
        "| principal | query | rows | RLS p50 | RLS p95 | H p50 | H p95 | ratio p50 | ratio p95 | buffers RLS / H | flags |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    visible = {p["role"]: p.get("visible_contracts") for p in data.get("principals", [])}
    for row in data.get("results", []):
        rls, hand, ratio = row["rls"], row["hand"], row.get("ratio") or {}
        labels = ", ".join(row.get("labels", []))
        who = f"{row['principal']} ({labels}; {visible.get(row['principal'], '?'):,} contracts)"
        flags = "; ".join(_flag(flag) for flag in rls.get("flags", []))
        if row.get("mismatch") or row.get("error"):
            flags = (flags + "; " if flags else "") + (row.get("error") or "ROWS DIFFER")
        lines.append(
            f"| {who} | {row['query']} | {row.get('rows', '')} | {_ms(rls.get('p50_ms'))} | {_ms(rls.get('p95_ms'))}"
            f" | {_ms(hand.get('p50_ms'))} | {_ms(hand.get('p95_ms'))} | {_ratio(ratio.get('p50'), P50_TARGET)}"
            f" | {_ratio(ratio.get('p95'), P95_TARGET)} | {rls.get('buffers', '—')} / {hand.get('buffers', '—')}"
            f" | {flags} |"
        )
    return "\n".join(lines) + "\n"
