"""Narration: each fault told as the six steps of a virtualized translation.

``Narrator`` subscribes to the trace bus, hands every event to a
``StoryBuilder`` (``emu.story``) and tells each fault story when it is
complete, as numbered lines.  Other VM exits (CR3 loads, INVLPG) get one
line; port I/O exits (one per console byte) are counted, not told.  Where
the hardware delivers the guest's own faults (natively, and under nested
paging) each delivery gets one line.

Every line says what its record holds: the walk lines print the entries as
the walk left them, and a step that did not happen (a VM entry after a
triple fault, a restart after the run ended) is not told.
"""

from __future__ import annotations

from rich.text import Text

from ..hw.exceptions import describe_vector
from ..hw.paging import PTE_D, decode_flags
from ..story import FaultStory, StoryBuilder
from .grid import grid_lines


def _flags(entry: int, pde: bool = False) -> str:
    return decode_flags(entry, pde=pde)


def _walk_lines(walk: dict | None, indent: str, prefix: str, space: str) -> list[str]:
    """One line per level: ``prefix`` is "s" (shadow) or "g" (guest),
    ``space`` the address space of the entries ("ma" or "pa")."""
    if not walk:
        return []
    out = []
    for lv in walk["levels"]:
        name = lv["name"]
        idx = (walk["va"] >> (22 if name == "pde" else 12)) & 0x3FF
        value = lv["value_after"]
        out.append(f"{indent}{prefix}{name}[{idx:#05x}] at {space} {lv['entry_pa']:#010x}"
                   f" = {value:#010x}  {_flags(value, pde=name == 'pde')}")
    return out


LABELS = {"hidden": "hidden fault: the guest maps it, the shadow does not (yet)",
          "tracing": "tracing fault: a write to a write-protected guest page table",
          "unsync": "the first write to a guest page table: let it go out of sync",
          "wp-emulate": "CR0.WP=0 lets the kernel write a read-only page: emulate",
          "cow": "a write to a page the VMM shares: copy it, break the sharing"}


def kind_line(story: FaultStory) -> str:
    """Step 3's classification, in words that agree with the guest walk
    shown in step 2 (the walk lines give the entries after the walk)."""
    kind = story.kind or "unknown"
    if kind != "dirty":
        return LABELS.get(kind, kind)
    walk = story.guest_walk
    leaf = walk["levels"][-1] if walk and walk.get("levels") else None
    if leaf is None:
        return "dirty fault: a write to a page the shadow maps read-only: now writable"
    before, after = leaf["value"], leaf["value_after"]
    if not before & PTE_D and after & PTE_D:
        return (f"dirty fault: first write to a clean page; the walk set D "
                f"(g{leaf['name']} {before:#010x} -> {after:#010x})")
    return ("dirty fault: the spte was read-only, the guest's entry allows the write "
            "(D already set): the spte becomes writable")


def _protection(op: str, user: bool | None) -> str:
    if op == "write":
        return "protection (read-only)"
    return "protection (a supervisor page)" if user else "protection"


def tell(story: FaultStory) -> list[str]:
    """The story in full, one line per step and datum."""
    if story.native:
        return [native_line(story.first, "native")]
    if story.first.kind == "nested_walk":
        return _tell_nested(story)
    first = story.first
    kind = story.kind or "unknown"
    access = story.access
    ec = story.error_code or 0
    lines = [f"── {kind} fault at va {story.va:#010x} ({access}) ── cycle {first.cycle:,}"]
    lines.append(" 1 TLB miss; the hardware walks the shadow table:" if not ec & 1 else
                 f" 1 no TLB entry allows the {access.op}; the hardware walks the shadow table:")
    lines += _walk_lines(first.data.get("walk"), "      ", "s", "ma")
    why = "not present" if not ec & 1 else _protection(access.op, access.user)
    lines.append(f"      -> #PF error {ec:#x} ({why}), intercepted")
    exit_ev = story.exit
    eip = exit_ev.data.get("eip") if exit_ev else None
    if exit_ev is None:
        return lines + ["   (the run ended before the VM exit)"]
    walk = story.guest_walk
    if walk is not None:
        lines.append(f" 2 VM exit at eip {eip:#010x}; the VMM walks the guest's table:")
        lines += _walk_lines(walk, "      ", "g", "pa")
    else:
        lines.append(f" 2 VM exit at eip {eip:#010x}; guest paging is off: "
                     f"pa = va (physical mode)")
    if kind == "true":
        tf = story.find("true_fault")
        lines.append(f" 3 true fault: the guest's own table denies it; inject #PF "
                     f"(error {tf.data['error_code']:#x}) into the guest")
        if story.entered == "inject":
            lines.append(" 5 VM entry at the guest's #PF handler")
        else:
            lines.append("   (no VM entry: the #PF could not be delivered; the run ended)")
        return lines
    pm = story.pmap
    lines.append(f" 3 {kind_line(story)}")
    if pm is not None:
        lines.append(f"      PMap: ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}"
                     f"{pmap_note(pm.data)}")
    emu = story.find("emulate")
    fill = story.find("shadow_fill")
    entered = story.entered is not None
    if emu is not None:
        # The VMM lets the one instruction write through a writable spte
        # (the hardware's TLB fill on the way is part of step 4, not a
        # restart), then makes the spte read-only again and syncs.
        changed = emu.data["changed"]
        shown = ", ".join(f"{i:#x}" for i in changed[:8]) + (" ..." if len(changed) > 8 else "")
        through = next((ev for ev in story.events() if ev.kind == "tlb_fill" and ev.step is None
                        and ev.cycle <= emu.cycle), None)
        lines.append(" 4 the VMM lets the instruction write once, through a writable spte:")
        what = f"entries [{shown}] changed" if changed else "no entry changed"
        fill_text = (f"TLB fill va {through.va:#010x} -> mpn {through.data['pn']:#x} "
                     f"({_rights(through.data)}); " if through is not None else "")
        lines.append(f"      {fill_text}in table page ppn {emu.data['ppn']:#x}: {what}")
        lines.append(f"      the spte is read-only again; {emu.data['dropped']} shadow "
                     "entries dropped")
        if entered:
            lines.append(" 5 VM entry after the emulated instruction")
    elif fill is not None:
        lines.append(f" 4 spte := {fill.data['spte']:#010x}  {_flags(fill.data['spte'])}"
                     f"  (mpn {fill.data['mpn']:#x})")
        if entered:
            lines.append(" 5 VM entry: restart the faulting instruction")
    tlb = story.restart_fill
    if tlb is not None:
        lines.append(f" 6 the hardware walk succeeds: TLB fill va {tlb.va:#010x} -> "
                     f"mpn {tlb.data['pn']:#x} ({_rights(tlb.data)})")
    if story.ended and not entered:
        lines.append("   (the run ended before the VM entry)")
    elif story.ended and story.entered == "resume" and tlb is None:
        lines.append("   (the run ended before the restarted instruction)")
    return lines


def _rights(data: dict) -> str:
    """A TLB entry's rights: W or r (read-only), U or s (supervisor)."""
    return ("W" if data.get("writable") else "r") + (" U" if data.get("user") else " s")


# How the PMap found the machine page (``pmap_lookup``'s ``how``), in full
# and in the one-line telling.
PMAP_NOTES = {"resident": ("", ""), "allocated": (" (allocated now, zeroed)", " (new)"),
              "swapped-in": (" (read back from the swap disk)", " (swapped in)"),
              "cow-broken": (" (a private copy: the sharing is broken)", " (copied)"),
              "rescued": (" (taken back: its write to the swap disk had ended)", " (rescued)")}


def pmap_note(data: dict, short: bool = False) -> str:
    how = data.get("how") or ("allocated" if data.get("allocated") else "resident")
    full, brief = PMAP_NOTES.get(how, (f" ({how})", f" ({how})"))
    return brief if short else full


def one_line(story: FaultStory) -> str:
    """The story in one line (brief narration, after the first of a kind)."""
    if story.native:
        return native_line(story.first, "native")
    if story.first.kind == "nested_walk":
        pm = story.pmap
        mpn = f" -> mpn {pm.data['mpn']:#x}{pmap_note(pm.data, short=True)}" if pm else ""
        gpa = story.first.data["gpa"]
        return (f"· nested fault at va {story.va:#010x}, gpa {gpa:#010x}: "
                f"ppn {gpa >> 12:#x}{mpn}")
    kind = story.kind or "unknown"
    line = f"· {kind} fault at va {story.va:#010x} ({story.access})"
    pm, fill, emu = story.pmap, story.find("shadow_fill"), story.find("emulate")
    if kind == "true":
        return line + ": injected into the guest"
    if emu is not None:
        return line + f": emulated, {emu.data['dropped']} shadow entries dropped"
    if pm is not None and fill is not None:
        return line + (f": ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}"
                       f"{pmap_note(pm.data, short=True)}, spte {fill.data['spte']:#010x}")
    return line


def _tell_nested(story: FaultStory) -> list[str]:
    first = story.first
    gpa = first.data["gpa"]
    lines = [f"── nested fault (EPT violation) at va {first.va:#010x}, gpa {gpa:#010x} "
             f"── cycle {first.cycle:,}",
             " 1 TLB miss; the hardware walks both dimensions (guest table, nested "
             "table) and finds no nested entry:"]
    lines += grid_lines(first.data.get("grid") or [], fault=True)
    exit_ev = story.exit
    eip = exit_ev.data.get("eip") if exit_ev else 0
    lines.append(f" 2 VM exit (EPT violation) at eip {eip:#010x}; the exit names the "
                 "guest-physical address: no guest walk needed")
    pm = story.pmap
    if pm is not None:
        lines.append(f" 3 PMap: ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}"
                     f"{pmap_note(pm.data)}")
    fill = story.find("nested_fill")
    if fill is not None:
        lines.append(f" 4 npte := {fill.data['npte']:#010x}  "
                     f"{_flags(fill.data['npte'])}  (ppn {fill.data['ppn']:#x})")
    if story.entered is not None:
        lines.append(" 5 VM entry: restart the faulting instruction")
    else:
        lines.append("   (the run ended before the VM entry)")
    tlb = story.restart_fill
    if tlb is not None:
        lines.append(f" 6 the 2D walk succeeds: TLB fill va {tlb.va:#010x} -> "
                     f"mpn {tlb.data['pn']:#x} ({_rights(tlb.data)})")
    elif story.ended and story.entered is not None:
        lines.append("   (the run ended before the restarted instruction)")
    return lines


def native_line(ev, mode: str) -> str:
    """An exception the hardware delivered to the guest (no VM exit)."""
    d = ev.data
    what = describe_vector(d["vector"])
    no_exit = " (no VM exit: the guest's own fault)" if mode == "nested" else ""
    if d["vector"] == 14:
        return (f"· #PF at va {d['cr2']:#010x} (error {d['error_code']:#x}) delivered "
                f"to the guest's handler at {d['handler']:#010x}{no_exit}")
    return f"· {what} delivered to the guest's handler at {d['handler']:#010x}"


def story_text(story: FaultStory) -> Text:
    """The full telling as a rich Text (notebooks: ``FaultStory._repr_html_``)."""
    lines = tell(story)
    text = Text(lines[0], style="bold")
    for line in lines[1:]:
        text.append("\n" + line)
    return text


class Narrator:
    """Prints faults as stories; ``write(text)`` is where the lines go."""

    def __init__(self, write, mode: str, at_line_start=lambda: True, brief: bool = False):
        """``brief``: tell the first fault of each kind in full, later ones
        in one line."""
        self.write = write
        self.mode = mode
        self.brief = brief
        self.told: set[str] = set()
        self.at_line_start = at_line_start
        self.builder = StoryBuilder(mode)
        self.faults = 0

    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        if not self.at_line_start():
            text = "\n" + text
        self.write(text)

    def __call__(self, ev) -> None:
        for story in self.builder.feed(ev):
            self._emit(self._tell(story))
        if ev.kind in ("cr3_load", "invlpg", "tables_freed"):
            self._emit([self._one_line(ev)])

    def _tell(self, story: FaultStory) -> list[str]:
        if story.native:
            return [native_line(story.first, self.mode)]
        self.faults += 1
        kind = "nested" if story.first.kind == "nested_walk" else story.kind or "unknown"
        if self.brief and kind in self.told:
            return [one_line(story)]
        self.told.add(kind)
        return tell(story)

    def _one_line(self, ev) -> str:
        d = ev.data
        if ev.kind == "tables_freed":
            return (f"· machine memory ran out and no guest page could go: the VMM "
                    f"freed {d['pages']} shadow pages the hardware was not walking "
                    f"({d['left']} left; the next faults rebuild what is used)")
        if ev.kind == "cr3_load":
            extra = f", {d['resynced']} out-of-sync entries dropped" if d.get("resynced") else ""
            if not d.get("paging"):
                return (f"· VM exit: guest CR3 := {d['guest_cr3']:#010x} (guest paging off: "
                        f"the hardware stays on the physical-mode shadow){extra}")
            return (f"· VM exit: guest CR3 := {d['guest_cr3']:#010x}; the VMM switches "
                    f"the hardware to shadow root mpn {d['root']:#x}{extra}")
        dropped = f", {d['dropped']} spte dropped" if d.get("dropped") else ""
        return f"· VM exit: INVLPG {ev.va:#010x}; the VMM invalidates it{dropped}"
