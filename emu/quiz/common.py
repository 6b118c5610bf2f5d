"""What every quiz kind shares: the problem record, the worked problem, the
way tables are printed (as the stepper prints a walk), and reading a
stopped machine without touching it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw.paging import PTE_P, PTE_PS, decode_flags
from ..ui.probe import Probe
from ..ui.story import error_text
from .harness import EXERCISE_LOW, KPT

QUIZ_VERSION = 1          # bump when a generator or the problem format changes


@dataclass(frozen=True)
class Problem:
    """One generated problem: which it is, and the kind's own spec."""

    kind: str
    seed: int
    number: int            # 1-based, within (kind, seed, difficulty)
    difficulty: int
    spec: object

    @property
    def name(self) -> str:
        return f"{self.kind} seed {self.seed} problem {self.number} (difficulty {self.difficulty})"


@dataclass(frozen=True)
class Section:
    """A block of the machine state: a title and monospace lines."""

    title: str
    lines: tuple


@dataclass(frozen=True)
class OpenAt:
    """Where ``--open`` stops: the run to the first of ``labels`` (address
    breakpoints stay on all of them), then ``micro`` until an event of one
    of ``events`` is shown (none: stop at the label)."""

    mode: str
    labels: tuple
    events: tuple = ()
    message: str = ""
    config: tuple = ()         # (Config field, value) pairs the problem's machine needs


@dataclass
class Worked:
    """A problem posed and solved: everything the renderers print."""

    intro: str                          # one paragraph: what the student is given
    state: list                         # Sections
    questions: list                     # one line per thing to answer
    answer: dict                        # the answer, as JSON (what --check compares)
    solution: list                      # the answer in words, one line per question
    why: list                           # one line per question: why that answer
    state_json: dict = field(default_factory=dict)
    open_at: OpenAt | None = None
    program: str = ""                   # the guest program's source


# --- printing entries as the stepper does ---------------------------------------------
def entry_line(name: str, index: int, space: str, addr: int, value: int) -> str:
    """``gpte[0x012] at pa 0x00156048 = 0x00234025  P r U A`` (story.py's form)."""
    pde = name.endswith("pde")
    return (f"{name}[{index:#05x}] at {space} {addr:#010x} = {value:#010x}  "
            f"{decode_flags(value, pde=pde)}")


def table_lines(name: str, space: str, base: int, entries: dict, *, notes=None,
                pse: bool = False) -> list[str]:
    """One line per nonzero entry of the table page at ``base`` (index
    order), then how many others are zero."""
    notes = notes or {}
    out = []
    for idx in sorted(entries):
        value = entries[idx]
        if not value:
            continue
        line = entry_line(name, idx, space, base + 4 * idx, value)
        if name.endswith("pde") and value & PTE_P and value & PTE_PS and pse:
            line += "  (4 MiB page)"
        if idx in notes:
            line += f"  ({notes[idx]})"
        out.append(line)
    out.append(f"(the other {1024 - len(out)} entries are 0)")
    return out


HARNESS_NOTE = "the quiz kernel's map of va 0-4 MiB; not asked"


def error_code_text(ec: int) -> str:
    return error_text(ec)


# --- reading a stopped machine ------------------------------------------------------------
def nonzero(table) -> dict:
    return {i: v for i, v in enumerate(table) if v}


def guest_tables(system, pd: int, tables) -> dict:
    """{pa of a table page: {index: entry}} for the page directory at ``pd``
    and the guest page tables at ``tables`` (their nonzero entries)."""
    p = Probe(system)
    out = {pd: nonzero(p.guest_table(pd))}
    for pa in tables:
        out[pa] = nonzero(p.guest_table(pa))
    return out


def machine_table(system, mpn: int) -> dict:
    return nonzero(Probe(system).machine_table(mpn))


def shadow_tables(system) -> tuple[int, dict]:
    """(ma of the root, {ma of a shadow table: {index: entry}}) of the
    tables the hardware walks under shadow paging (from its CR3), the
    exercise's part (the tables below pdx 1 and up).  Present entries
    only: the hardware reads nothing else of a not-present one, and what
    the VMM keeps in its free bits (a stale record) is its own."""
    root = system.mmu.cr3 & ~0xFFF
    spd = _present(machine_table(system, root >> 12))
    out = {root: spd}
    for pdx, spde in spd.items():
        if pdx:
            out[spde & ~0xFFF] = _present(machine_table(system, spde >> 12))
    return root, out


def _present(table: dict) -> dict:
    return {i: e for i, e in table.items() if e & PTE_P}


def pmap_lines(system, ppns) -> list[str]:
    out = []
    for ppn in sorted(set(ppns)):
        mpn = system.pmap.lookup(ppn)
        state = system.pmap.state(ppn)
        target = f"mpn {mpn:#x}" if mpn is not None else "-"
        out.append(f"ppn {ppn:#x} -> {target} ({state})")
    return out


def pmap_json(system, ppns) -> list[dict]:
    return [{"ppn": ppn, "mpn": system.pmap.lookup(ppn), "state": system.pmap.state(ppn)}
            for ppn in sorted(set(ppns))]


def tlb_json(tlb, space: str, low_vpn: int = 0x400) -> list[dict]:
    """The valid entries for the exercise's pages, as ``tlb_lines`` lists them."""
    return [{"va": e.vpn << 12, space: e.pn << 12, "writable": e.writable, "user": e.user,
             "dirty": e.dirty, "global": e.global_, "large": e.large}
            for e in tlb.valid_entries() if e.vpn >= low_vpn]


def tlb_lines(tlb, space: str, low_vpn: int = 0x400) -> list[str]:
    """The valid entries of ``tlb`` for the exercise's pages (vpn >= 0x400),
    set by set, in replacement order (first: the next to go)."""
    out = []
    for e in tlb.valid_entries():
        if e.vpn < low_vpn:
            continue
        rights = ("W" if e.writable else "r") + (" U" if e.user else " s") + \
            (" D" if e.dirty else "") + (" G" if e.global_ else "")
        size = " (4 MiB)" if e.large else ""
        out.append(f"va {e.vpn << 12:#010x} -> {space} {e.pn << 12:#010x}  {rights}{size}")
    return out or ["(no entry for the exercise's pages)"]


__all__ = ["EXERCISE_LOW", "HARNESS_NOTE", "KPT", "QUIZ_VERSION", "OpenAt", "Problem",
           "Section", "Worked", "entry_line", "error_code_text", "guest_tables",
           "machine_table", "nonzero", "pmap_json", "pmap_lines", "shadow_tables",
           "table_lines", "tlb_json", "tlb_lines"]
