"""``emu compare``: one guest natively, under shadow paging (each policy) and
under nested paging, side by side.

It checks that the guest-visible results are identical, then shows one
table (instructions, simulated cycles and slowdown against native, TLB
misses, table references per walk, VM exits by reason, faults by kind) and
a stacked bar chart of where the cycles went, and can export both as JSON
or SVG.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..system import Config, Result, System
from ..vmm.shadow import POLICIES

# Chart categories: the cycle categories folded into what a lecture compares.
CHART = (("guest", "guest instructions", "█", "green"),
         ("walk", "hardware page walks", "▓", "yellow"),
         ("exit", "VM exits and entries", "▒", "red"),
         ("vmm", "VMM software", "░", "blue"))


@dataclass
class Comparison:
    runs: list[tuple[str, Result]]
    mismatches: list[str]

    @property
    def native(self) -> Result:
        return self.runs[0][1]


def configurations(base: Config) -> list[tuple[str, Config]]:
    out = [("native", base.with_(mode="native"))]
    out += [(f"shadow {p}", base.with_(mode="shadow", shadow_policy=p)) for p in POLICIES]
    out.append(("nested", base.with_(mode="nested")))
    return out


def compare(image, base: Config | None = None) -> Comparison:
    """Run ``image`` in every configuration; compare what the guest sees."""
    base = base or Config()
    runs = [(label, System(image, cfg).run()) for label, cfg in configurations(base)]
    reference = runs[0][1].guest_visible()
    mismatches = []
    for label, r in runs[1:]:
        seen = r.guest_visible()
        for key in reference:
            if seen[key] != reference[key]:
                mismatches.append(f"{label}: {key} differs from native")
    return Comparison(runs, mismatches)


def chart_parts(r: Result) -> dict[str, int]:
    cats = r.stats["cycles_by_category"]
    parts = {"guest": cats.get("guest", 0), "walk": cats.get("walk", 0),
             "exit": cats.get("vm_exit", 0) + cats.get("vm_entry", 0)}
    parts["vmm"] = sum(v for k, v in cats.items() if k.startswith("vmm_"))
    return parts


def _tlb_misses(r: Result) -> int:
    mmu = r.stats["mmu"]
    tlbs = [mmu["tlb"]] if "tlb" in mmu else [mmu["itlb"], mmu["dtlb"]]
    return sum(t["misses"] for t in tlbs)


def row_data(label: str, r: Result, native: Result) -> dict:
    mmu = r.stats["mmu"]
    vmm = r.stats.get("vmm", {})
    return {
        "config": label, "instructions": r.instructions, "cycles": r.cycles,
        "slowdown": round(r.cycles / native.cycles, 3) if native.cycles else None,
        "tlb_misses": _tlb_misses(r), "walks": mmu["walks"], "walk_refs": mmu["walk_refs"],
        "refs_per_walk": round(mmu["walk_refs"] / mmu["walks"], 2) if mmu["walks"] else 0,
        "vm_exits": vmm.get("exits", {}), "faults": {k: v for k, v in vmm.get(
            "faults", {}).items() if v},
        "cycles_by_category": r.stats["cycles_by_category"], "chart": chart_parts(r),
        "host_seconds": r.host_seconds,
    }


def to_json(cmp: Comparison) -> dict:
    native = cmp.native
    return {"identical": not cmp.mismatches, "mismatches": cmp.mismatches,
            "outcome": native.outcome, "exit_status": native.exit_status,
            "runs": [row_data(label, r, native) for label, r in cmp.runs]}


def _short(d: dict) -> str:
    return " ".join(f"{k}:{v:,}" for k, v in d.items()) or "-"


def table(cmp: Comparison) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, just in (("config", "left"), ("instructions", "right"), ("cycles", "right"),
                       ("vs native", "right"), ("TLB misses", "right"),
                       ("refs/walk", "right"), ("VM exits", "left"), ("faults", "left")):
        t.add_column(name, justify=just, overflow="fold")
    for label, r in cmp.runs:
        d = row_data(label, r, cmp.native)
        t.add_row(label, f"{d['instructions']:,}", f"{d['cycles']:,}", f"{d['slowdown']:.2f}x",
                  f"{d['tlb_misses']:,}", f"{d['refs_per_walk']:.2f}", _short(d["vm_exits"]),
                  _short(d["faults"]))
    return t


def chart(cmp: Comparison, width: int = 50) -> Group:
    """A stacked bar per configuration, scaled to the slowest."""
    most = max(r.cycles for _, r in cmp.runs) or 1
    label_w = max(len(label) for label, _ in cmp.runs)
    lines = [Text("cycles by category (each bar scaled to the slowest run)", style="bold")]
    for label, r in cmp.runs:
        parts = chart_parts(r)
        line = Text(f"{label:<{label_w}}  ")
        total_cells = round(width * r.cycles / most)
        cells_used = 0
        for i, (key, _, char, color) in enumerate(CHART):
            share = parts[key] / r.cycles if r.cycles else 0
            n = round(total_cells * share) if i < len(CHART) - 1 else total_cells - cells_used
            n = max(n, 0)
            cells_used += n
            line.append(char * n, style=color)
        line.append(f"  {r.cycles:,}")
        lines.append(line)
    legend = Text("  ".join(f"{char} {name}" for _, name, char, _ in CHART))
    lines.append(legend)
    return Group(*lines)


def render(cmp: Comparison, program: str) -> Group:
    head = Text.assemble(("compare ", "bold"), program, ": ")
    if cmp.mismatches:
        head.append("guest-visible results DIFFER", style="bold red")
    else:
        native = cmp.native
        head.append("guest-visible results identical in every configuration", style="green")
        status = "" if native.exit_status is None else f", status {native.exit_status}"
        head.append(f" ({native.outcome}{status})")
    parts = [head, table(cmp), chart(cmp)]
    for m in cmp.mismatches:
        parts.append(Text(m, style="red"))
    return Group(*parts)
