"""The run summary: a rich table built from a ``Result``."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..system import Result


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def summary(result: Result) -> Group:
    """A renderable: the outcome line and a table of the run's counters."""
    style = {"poweroff": "green", "crash": "bold red", "budget": "yellow"}[result.outcome]
    head = Text.assemble(("run ", "bold"), (result.outcome, style),
                         f" — {result.message}" if result.message else "")
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    t.add_column("counter")
    t.add_column("value", justify="right")
    t.add_column("counter")
    t.add_column("value", justify="right")
    rows = summary_rows(result)
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:]
    for i in range(half):
        a = left[i]
        b = right[i] if i < len(right) else ("", "")
        t.add_row(a[0], a[1], b[0], b[1])
    return Group(head, t)


def summary_rows(result: Result) -> list[tuple[str, str]]:
    s = result.stats
    cpu, mmu = s["cpu"], s["mmu"]
    rows = [("mode", result.mode),
            ("instructions", _fmt(result.instructions)),
            ("cycles", _fmt(result.cycles)),
            ("host seconds", f"{result.host_seconds:.3f}"),
            ("instr / host s", _fmt(int(result.instructions / result.host_seconds))
             if result.host_seconds > 0 else "-"),
            ("exit status", "-" if result.exit_status is None else str(result.exit_status)),
            ("interrupts", _fmt(cpu["interrupts"])),
            ("exceptions", ", ".join(f"{k}:{v}" for k, v in cpu["exceptions"].items()) or "0")]
    tlbs = [("tlb", mmu["tlb"])] if "tlb" in mmu else [("itlb", mmu["itlb"]), ("dtlb", mmu["dtlb"])]
    for name, t in tlbs:
        rows.append((f"{name} hits / misses", f"{t['hits']:,} / {t['misses']:,}"))
        rows.append((f"{name} evictions / flushes", f"{t['evictions']:,} / {t['flushes']:,}"))
    rows += [("page walks", _fmt(mmu["walks"])),
             ("walk references", _fmt(mmu["walk_refs"])),
             ("#PF raised by walks", _fmt(mmu["page_faults"]))]
    for key, title in (("vmm", "vm exits"),):
        if key in s:
            rows.append((title, _fmt(s[key].get("exits", 0))))
    for cat, cyc in s.get("cycles_by_category", {}).items():
        rows.append((f"cycles: {cat}", _fmt(cyc)))
    return rows
