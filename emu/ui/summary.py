"""The run summary: small rich tables built from a ``Result``.

    run          outcome, mode, instructions, cycles, host time and rate
    translation  per TLB: lookups, hits, misses, evictions, flushes; walks
    VMM          exits by reason, faults by kind, shadow pages, PMap
    cycles       where the simulated cycles went, by category, with a bar
"""

from __future__ import annotations

from rich import box
from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..system import Result

_OUTCOME_STYLE = {"poweroff": "green", "crash": "bold red", "budget": "yellow",
                  "interrupted": "yellow"}          # Ctrl-C: what was measured so far


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
              pad_edge=False, show_edge=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    return t


def run_table(r: Result) -> Table:
    t = _table("run", "", "")
    t.show_header = False
    rate = int(r.instructions / r.host_seconds) if r.host_seconds > 0 else 0
    for k, v in (("mode", r.mode), ("instructions", _n(r.instructions)),
                 ("cycles", _n(r.cycles)), ("host seconds", f"{r.host_seconds:.3f}"),
                 ("instructions / host s", _n(rate)),
                 ("exit status", "-" if r.exit_status is None else str(r.exit_status)),
                 ("interrupts", _n(r.stats["cpu"]["interrupts"])),
                 ("exceptions (vector:n)", " ".join(
                     f"{k}:{v}" for k, v in r.stats["cpu"]["exceptions"].items()) or "-")):
        t.add_row(k, v)
    return t


def tlb_table(r: Result) -> Table:
    mmu = r.stats["mmu"]
    t = _table("translation", "", "lookups", "hits", "misses", "evict", "flush")
    tlbs = [("tlb", mmu["tlb"])] if "tlb" in mmu else [("itlb", mmu["itlb"]),
                                                        ("dtlb", mmu["dtlb"])]
    for name, s in tlbs:
        t.add_row(name, _n(s["lookups"]), _n(s["hits"]), _n(s["misses"]),
                  _n(s["evictions"]), _n(s["flushes"]))
    t.add_row("walks", _n(mmu["walks"]), "", "", "", "")
    t.add_row("walk refs", _n(mmu["walk_refs"]), "", "", "", "")
    return t


def vmm_table(r: Result) -> Table | None:
    v = r.stats.get("vmm")
    if v is None:
        return None
    t = _table(f"VMM ({v.get('policy', '')})", "", "")
    t.show_header = False
    for reason, n in v["exits"].items():
        t.add_row(f"exits: {reason}", _n(n))
    for kind, n in v["faults"].items():
        if n:
            t.add_row(f"{kind} faults", _n(n))
    if "shadow" in v:
        t.add_row("shadow pages (peak)", _n(v["shadow"]["shadow_pages_peak"]))
        if v["shadow"]["shrunk"]:
            t.add_row("shadow pages freed for room", _n(v["shadow"]["shrunk"]))
    t.add_row("PMap pages allocated", _n(v["pmap"]["allocated"]))
    return t


def cycles_table(r: Result) -> Table:
    cats = r.stats.get("cycles_by_category", {})
    total = sum(cats.values()) or 1
    t = _table("cycles by category", "", "cycles", "%")
    t.add_column("", justify="left")
    for cat, cyc in sorted(cats.items(), key=lambda kv: -kv[1]):
        share = cyc / total
        t.add_row(cat, _n(cyc), f"{100 * share:.1f}", "█" * max(int(share * 20), 0))
    return t


def summary(result: Result) -> Group:
    """A renderable: the outcome line and the tables."""
    style = _OUTCOME_STYLE.get(result.outcome, "bold")
    head = Text.assemble(("run ", "bold"), (result.outcome, style),
                         f" — {result.message}" if result.message else "")
    tables = [t for t in (run_table(result), tlb_table(result), vmm_table(result),
                          cycles_table(result)) if t is not None]
    return Group(head, Columns(tables, padding=(0, 4)))


def multi_summary(multi, config) -> Group:
    """Several VMs on one machine: a line per VM, the host's counters."""
    t = _table(f"{len(multi.results)} VMs on {config.machine_bytes >> 20} MiB of machine "
               f"memory ({config.mode})", "vm", "outcome", "status", "instructions",
               "VM exits", "faults")
    for name, r in multi.results:
        vmm = r.stats.get("vmm", {})
        faults = " ".join(f"{k}:{v:,}" for k, v in vmm.get("faults", {}).items() if v)
        t.add_row(name, r.outcome, "-" if r.exit_status is None else str(r.exit_status),
                  _n(r.instructions), _n(vmm.get("exits_total", 0)), faults or "-")
    h = multi.host
    ht = _table("host", "", "")
    ht.show_header = False
    for k, v in (("simulated cycles", multi.cycles),
                 ("machine pages (peak in use)",
                  f"{h['machine']['machine_pages']:,} ({h['machine']['peak_allocated']:,})"),
                 ("reclaimed", h["reclaimed"]), ("swapped out / in",
                                                 f"{h['swap_outs']:,} / {h['swap_ins']:,}"),
                 ("zero pages dropped", h["zero_dropped"]),
                 ("swap disk busy cycles", h["disk"]["busy_cycles"]),
                 ("pages saved by sharing (most)",
                  f"{h['sharing_saved']:,} ({h['sharing_saved_peak']:,})"),
                 ("zero pages shared", h["zero_shared"]), ("COW breaks", h["cow_breaks"]),
                 ("sharing scans", h["scans"]),
                 ("VMM tables freed for room", h["tables_shrunk"]),
                 ("given back by VMs that ended", h["released"])):
        ht.add_row(k, _n(v))
    return Group(t, ht)
