"""``--report DIR``: the standard tables and figures of a sweep, as a
Markdown page (``DIR/index.md``) and SVG figures beside it.

1. Exits and cycles per guest and mode -- the comparison Adams & Agesen
   made with their forkwait microbenchmark (ASPLOS 2006).
2. TLB size against cycles and misses.
3. Walk references against TLB reach: the cost of a two-dimensional
   (nested) walk (Bhargava et al., ASPLOS 2008).
4. Shadow policy against the guest's page-table write rate.

Each section appears when the sweep has the data for it (section 2 needs
two TLB sizes, say) and otherwise says which axis would give it.  The
numbers come from the rows alone; ``tables.py`` computes them and
``figures.py`` draws them.
"""

from __future__ import annotations

import os

from ..errors import EmuError
from .tables import (
    SectionData,
    exits_and_cycles,
    policy_vs_pt_writes,
    tlb_vs_cycles,
    walks_vs_reach,
)

SOURCES = """\
## Sources

* K. Adams and O. Agesen, "A Comparison of Software and Hardware Techniques
  for x86 Virtualization", ASPLOS 2006: forkwait, a process-creation
  microbenchmark, run natively, under a software VMM (shadow page tables
  kept coherent by tracing) and under a hardware-assisted VMM; the gap is
  explained by the exits each one takes and what each exit costs.
* J. B. Chen, A. Borg and N. P. Jouppi, "A Simulation Based Study of TLB
  Performance", ISCA 1992, and M. Talluri and M. D. Hill, "Surpassing the
  TLB Performance of Superpages with Less Operating System Support",
  ASPLOS 1994: TLB size, misses and reach (the memory the TLB maps).
* R. Bhargava, B. Serebrin, F. Spadini and S. Manne, "Accelerating
  Two-Dimensional Page Walks for Virtualized Systems", ASPLOS 2008: a
  nested walk makes up to (n+1)(m+1)-1 references for n guest and m
  nested levels -- 24 on x86-64, 8 with the two-level tables here -- and
  caches that cut them.
* Linux KVM, Documentation/virt/kvm/x86/mmu.rst: write-protected guest
  page tables (tracing) against unsynchronized shadow pages resynced at
  the next TLB flush, the two shadow policies compared in section 4.
"""


def write_report(rows: list[dict], folder: str, meta: dict) -> str:
    """Write ``folder/index.md`` and its figures; returns the page's path."""
    from .figures import draw
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise EmuError(f"cannot write {folder}: {e.strerror}") from None
    sections = [exits_and_cycles(rows), tlb_vs_cycles(rows), walks_vs_reach(rows),
                policy_vs_pt_writes(rows)]
    parts = [header(rows, meta)]
    for section in sections:
        if section.figure is not None:
            draw(section, os.path.join(folder, section.figure.file))
        parts.append(render(section))
    parts.append(SOURCES)
    path = os.path.join(folder, "index.md")
    text = "\n".join(parts)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise EmuError(f"cannot write {path}: {e.strerror}") from None
    return path


def header(rows: list[dict], meta: dict) -> str:
    from collections import Counter
    outcomes = Counter(r["outcome"] for r in rows)
    told = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    return (f"# Sweep {meta.get('name', '')}\n\n"
            f"{len(rows)} runs ({told}); emulator {meta.get('emulator', '?')}.  "
            "Cycles are simulated cycles of the cost model (`emu/cost.py`); every "
            "number is a column of the results (`pandas.read_parquet(DIR)`).\n")


def render(section: SectionData) -> str:
    out = [f"## {section.title}\n", section.intro + "\n"]
    if section.missing:
        out.append(f"*Not in this sweep: {section.missing}*\n")
        return "\n".join(out)
    if section.figure is not None:
        out.append(f"![{section.figure.title}]({section.figure.file})\n")
    for caption, table in section.tables:
        if caption:
            out.append(f"{caption}\n")
        out.append(markdown_table(table) + "\n")
    return "\n".join(out)


def markdown_table(table: list[list]) -> str:
    """A header row and data rows; numbers right-aligned."""
    head, *body = table
    cells = [[fmt(v) for v in row] for row in table]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in body) and body
               for i in range(len(head))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.rjust(w) if numeric[i] and n else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(row, widths))) + " |")
        if n == 0:
            lines.append("|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else
                                        ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
