"""``emu compare``'s views: one guest natively, under shadow paging (each
policy) and under nested paging, side by side.

The runs and their check are ``emu.compare``'s; this module shows them: a
line that says whether the guest saw the same everywhere, a table of the
costs (simulated cycles and slowdown against native, TLB misses, table
references per walk), a table of VM exits by reason and faults by kind (one
column per configuration), and a stacked bar chart of where the cycles
went.  Every part fits the console's width, 80 columns included: columns
are abbreviated and, when even that does not fit, each configuration is
stacked on lines of its own; a number is never split.

``split_io`` shows the console's I/O exits apart from the paging exits, in
the table and as a band of their own in the chart: a chatty guest spends
most of its VMM cycles on them, and they are not page faults.
"""

from __future__ import annotations

import textwrap

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..compare import Comparison, compare, configurations
from ..cost import DEFAULT_COSTS
from ..system import Result

# Chart bands: the cycle categories folded into what a lecture compares.
CHART = (("guest", "guest instructions", "█", "green"),
         ("walk", "hardware page walks", "▓", "yellow"),
         ("exit", "VM exits and entries", "▒", "red"),
         ("io", "console I/O exits", "≡", "magenta"),
         ("vmm", "VMM software", "░", "blue"))
IO_REASONS = ("io",)
EXIT_ORDER = ("pf", "npf", "cr0_write", "cr3_read", "cr3_write", "cr4_write", "invlpg", "hlt",
              "io")
FAULT_ORDER = ("true", "hidden", "dirty", "tracing", "unsync", "wp-emulate", "cow", "nested")
MIN_WIDTH = 40


def io_cycles(r: Result, costs=DEFAULT_COSTS) -> tuple[int, int]:
    """(exit and entry cycles, VMM cycles) the console's I/O exits took:
    each exit's transition, as the cost model charges it, and the VMM's
    emulation of the port access (``vmm_io``)."""
    exits = r.stats.get("vmm", {}).get("exits", {})
    n = sum(exits.get(reason, 0) for reason in IO_REASONS)
    return n * costs.vm_exit, r.stats["cycles_by_category"].get("vmm_io", 0)


def chart_parts(r: Result, split_io: bool = False, costs=DEFAULT_COSTS) -> dict[str, int]:
    cats = r.stats["cycles_by_category"]
    parts = {"guest": cats.get("guest", 0), "walk": cats.get("walk", 0),
             "exit": cats.get("vm_exit", 0) + cats.get("vm_entry", 0)}
    parts["vmm"] = sum(v for k, v in cats.items() if k.startswith("vmm_"))
    if split_io:
        transitions, vmm = io_cycles(r, costs)
        parts["exit"] -= transitions
        parts["vmm"] -= vmm
        parts["io"] = transitions + vmm
    return parts


def _tlb_misses(r: Result) -> int:
    mmu = r.stats["mmu"]
    tlbs = [mmu["tlb"]] if "tlb" in mmu else [mmu["itlb"], mmu["dtlb"]]
    return sum(t["misses"] for t in tlbs)


def row_data(label: str, r: Result, native: Result, costs=DEFAULT_COSTS) -> dict:
    mmu = r.stats["mmu"]
    vmm = r.stats.get("vmm", {})
    transitions, io_vmm = io_cycles(r, costs)
    return {
        "config": label, "instructions": r.instructions, "cycles": r.cycles,
        "slowdown": round(r.cycles / native.cycles, 3) if native.cycles else None,
        "tlb_misses": _tlb_misses(r), "walks": mmu["walks"], "walk_refs": mmu["walk_refs"],
        "refs_per_walk": round(mmu["walk_refs"] / mmu["walks"], 2) if mmu["walks"] else 0,
        "vm_exits": vmm.get("exits", {}), "faults": {k: v for k, v in vmm.get(
            "faults", {}).items() if v},
        "cycles_by_category": r.stats["cycles_by_category"], "chart": chart_parts(r),
        "io_exit_cycles": transitions + io_vmm,
        "host_seconds": r.host_seconds,
    }


def _costs(cmp: Comparison, label: str):
    for name, config in cmp.configs:
        if name == label:
            return config.costs
    return DEFAULT_COSTS


def to_json(cmp: Comparison) -> dict:
    native = cmp.native
    return {"identical": not cmp.mismatches, "mismatches": cmp.mismatches,
            "outcome": native.outcome, "exit_status": native.exit_status,
            "runs": [row_data(label, r, native, _costs(cmp, label)) for label, r in cmp.runs]}


# --- the text ------------------------------------------------------------------------
def _n(value) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,}" if value else "-"


IO_SHARE = "% exit+VMM"        # the I/O exits' share of the exit, entry and VMM cycles


def _io_cost(r: Result, costs) -> dict:
    """The console's I/O exits: how many, and their share of all the
    cycles spent in VM exits, entries and the VMM."""
    io = sum(io_cycles(r, costs))
    parts = chart_parts(r)
    total = parts["exit"] + parts["vmm"]
    n = sum(r.stats.get("vmm", {}).get("exits", {}).get(k, 0) for k in IO_REASONS)
    return {"exits": n, IO_SHARE: f"{100 * io / total:.0f}%" if io and total else "-"}


def _slowdown(r: Result, native: Result) -> str:
    """Cycles against native, rounded once (not from the JSON's 3 decimals)."""
    return f"{r.cycles / native.cycles:.2f}x" if native.cycles else "-"


def _short_label(label: str) -> str:
    """A column header: ``shadow trace-cache`` on two lines."""
    return label.replace(" ", "\n", 1)


def head(cmp: Comparison, program: str) -> Text:
    head = Text.assemble(("compare ", "bold"), program, ": ")
    native = cmp.native
    if cmp.mismatches:
        head.append("guest-visible results DIFFER", style="bold red")
    else:
        head.append("guest-visible results identical in every configuration",
                    style="green")
    status = "" if native.exit_status is None else f", status {native.exit_status}"
    head.append(f"\n({native.outcome}{status}, {native.instructions:,} instructions, "
                f"{len(cmp.runs)} configurations)")
    return head


def cost_table(cmp: Comparison) -> Table:
    """One row per configuration: cycles, slowdown, TLB misses, refs/walk."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, just in (("config", "left"), ("cycles", "right"), ("vs native", "right"),
                       ("TLB misses", "right"), ("refs/walk", "right")):
        t.add_column(name, justify=just, no_wrap=True)
    for label, r in cmp.runs:
        d = row_data(label, r, cmp.native)
        t.add_row(label, f"{d['cycles']:,}", _slowdown(r, cmp.native), f"{d['tlb_misses']:,}",
                  f"{d['refs_per_walk']:.2f}")
    return t


def _ordered(keys, order) -> list[str]:
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def event_table(cmp: Comparison, split_io: bool = False) -> Table | None:
    """VM exits by reason and faults by kind: a row each, a column per
    configuration (configurations without a VMM show '-')."""
    exits = {label: r.stats.get("vmm", {}).get("exits", {}) for label, r in cmp.runs}
    faults = {label: r.stats.get("vmm", {}).get("faults", {}) for label, r in cmp.runs}
    reasons = _ordered({k for e in exits.values() for k, v in e.items() if v}, EXIT_ORDER)
    kinds = _ordered({k for f in faults.values() for k, v in f.items() if v}, FAULT_ORDER)
    if not reasons and not kinds:
        return None
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column("", no_wrap=True)
    for label, _ in cmp.runs:
        t.add_column(_short_label(label), justify="right", no_wrap=True)

    def section(title: str, rows: list[str], data: dict) -> None:
        if not rows:
            return
        t.add_row(Text(title, style="bold"), *[""] * len(cmp.runs))
        for key in rows:
            t.add_row(f"  {key}", *[_n(data[label].get(key, 0)) for label, _ in cmp.runs])
    if split_io:
        # Short titles: six configurations still fit in 80 columns.
        paging = [r for r in reasons if r not in IO_REASONS]
        section("paging exits", paging, exits)
        if any(exits[label].get(r) for label, _ in cmp.runs for r in IO_REASONS):
            io = {label: _io_cost(r, _costs(cmp, label)) for label, r in cmp.runs}
            section("console I/O", ["exits", IO_SHARE], io)
    else:
        section("VM exits", reasons, exits)
    section("faults", kinds, faults)
    return t


def chart(cmp: Comparison, width: int = 80, split_io: bool = False) -> Group:
    """A stacked bar per configuration, scaled to the slowest, ``width``
    columns wide in all."""
    most = max(r.cycles for _, r in cmp.runs) or 1
    label_w = max(len(label) for label, _ in cmp.runs)
    num_w = max(len(f"{r.cycles:,}") for _, r in cmp.runs)
    bar_w = max(width - label_w - num_w - 4, 10)
    bands = [b for b in CHART if split_io or b[0] != "io"]
    lines = [Text("cycles by category (each bar scaled to the slowest run)", style="bold")]
    for label, r in cmp.runs:
        parts = chart_parts(r, split_io, _costs(cmp, label))
        line = Text(f"{label:<{label_w}}  ", no_wrap=True)
        total_cells = round(bar_w * r.cycles / most)
        cells_used = 0
        for i, (key, _, char, color) in enumerate(bands):
            share = parts[key] / r.cycles if r.cycles else 0
            n = round(total_cells * share) if i < len(bands) - 1 else total_cells - cells_used
            n = max(n, 0)
            cells_used += n
            line.append(char * n, style=color)
        line.append(f"  {r.cycles:,}")
        lines.append(line)
    legend = [f"{char} {name}" for _, name, char, _ in bands]
    row: list[str] = []
    for item in legend:                 # the legend wraps between its items
        if row and len("  ".join([*row, item])) > width:
            lines.append(Text("  ".join(row)))
            row = []
        row.append(item)
    lines.append(Text("  ".join(row)))
    return Group(*lines)


def stacked(cmp: Comparison, split_io: bool = False, width: int = 80) -> Group:
    """Each configuration on lines of its own: for consoles too narrow for
    the tables.  A line too long for ``width`` wraps between its items,
    indented under its first (so no number is split, and a wrapped list
    of exits still reads as one)."""
    lines = []

    def add(text: str) -> None:
        lines.extend(Text(part, no_wrap=True) for part in textwrap.wrap(
            text, width, initial_indent="  ", subsequent_indent="      ",
            break_long_words=False, break_on_hyphens=False))
    for label, r in cmp.runs:
        d = row_data(label, r, cmp.native, _costs(cmp, label))
        lines.append(Text(label, style="bold"))
        add(f"cycles {d['cycles']:,} ({_slowdown(r, cmp.native)} native)")
        add(f"TLB misses {d['tlb_misses']:,}, refs/walk {d['refs_per_walk']:.2f}")
        exits = d["vm_exits"]
        if split_io:
            io = {k: v for k, v in exits.items() if k in IO_REASONS}
            paging = {k: v for k, v in exits.items() if k not in IO_REASONS}
            add("paging VM exits " + _pairs(paging, EXIT_ORDER))
            add("console I/O exits " + _pairs(io, EXIT_ORDER) +
                (f" ({d['io_exit_cycles']:,} cycles)" if io else ""))
        else:
            add("VM exits " + _pairs(exits, EXIT_ORDER))
        add("faults " + _pairs(d["faults"], FAULT_ORDER))
    return Group(*lines)


def _pairs(d: dict, order) -> str:
    keys = _ordered([k for k, v in d.items() if v], order)
    return " ".join(f"{k}:{d[k]:,}" for k in keys) or "-"


def _width_of(renderable, width: int) -> int:
    """The widest line ``renderable`` takes on an unbounded console."""
    from rich.console import Console
    console = Console(width=1000, color_system=None, file=None)
    return console.measure(renderable).maximum if width else 0


def render(cmp: Comparison, program: str, width: int = 80, split_io: bool = False) -> Group:
    """Everything, ``width`` columns wide at most."""
    parts: list = [head(cmp, program)]
    tables = [t for t in (cost_table(cmp), event_table(cmp, split_io)) if t is not None]
    if all(_width_of(t, width) <= width for t in tables):
        for t in tables:
            parts += [Text(""), t]
    else:
        parts += [Text(""), stacked(cmp, split_io, width)]
    parts += [Text(""), chart(cmp, width, split_io)]
    for m in cmp.mismatches:
        parts.append(Text(m, style="red"))
    return Group(*parts)


__all__ = ["CHART", "chart", "chart_parts", "compare", "configurations", "render", "row_data",
           "to_json"]
