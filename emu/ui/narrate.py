"""Narration: each fault told as the six steps of a virtualized translation.

``Narrator`` subscribes to the trace bus and turns the events of one #PF
exit (shadow walk, VM exit, guest walk, classification, PMap, shadow fill,
VM entry, TLB fill) into a numbered story, printed when the story is whole.
Other VM exits (CR3 loads, INVLPG, control registers) get one line; port
I/O exits (one per console byte) are counted, not told.  Natively there is
no VMM: the narrator tells the exceptions the hardware delivers.
"""

from __future__ import annotations

from ..hw.exceptions import describe_vector
from ..hw.paging import decode_flags
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
        self.story: list | None = None
        self.pending_va: int | None = None
        self.faults = 0

    # --- output -----------------------------------------------------------------
    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        if not self.at_line_start():
            text = "\n" + text
        self.write(text)

    # --- events -----------------------------------------------------------------
    def __call__(self, ev) -> None:
        kind = ev.kind
        if kind == "run_end":
            self._flush()             # a run may end in the middle of a fault
            return
        if kind in ("shadow_walk", "nested_walk") and ev.step == 1:
            self._flush()
            self.story = [ev]
            return
        if self.story is not None:
            if (kind == "tlb_fill" and ev.va == (self.story[0].va & ~0xFFF)
                    and self._entered()):
                self.story.append(ev)
                self._flush()
                return
            if kind in ("vm_exit",) and self._entered():
                self._flush()
            else:
                self.story.append(ev)
                return
        if kind == "vm_exit":
            if ev.data.get("reason") not in ("pf", "io"):
                self.pending_exit = ev
            return
        if kind in ("cr3_load", "invlpg"):
            self._emit([self._one_line(ev)])
        elif (kind == "deliver" and self.mode in ("native", "nested")
              and ev.data["source"] == "fault"):
            self._emit([self._native_delivery(ev)])

    def _entered(self) -> bool:
        return any(e.kind == "vm_entry" for e in self.story)

    def _one_line(self, ev) -> str:
        d = ev.data
        if ev.kind == "cr3_load":
            extra = f", {d['resynced']} out-of-sync entries dropped" if d.get("resynced") else ""
            if not d.get("paging"):
                return (f"· VM exit: guest CR3 := {d['guest_cr3']:#010x} (guest paging off: "
                        f"the hardware stays on the physical-mode shadow){extra}")
            return (f"· VM exit: guest CR3 := {d['guest_cr3']:#010x}; the VMM switches "
                    f"the hardware to shadow root mpn {d['root']:#x}{extra}")
        dropped = f", {d['dropped']} spte dropped" if d.get("dropped") else ""
        return f"· VM exit: INVLPG {ev.va:#010x}; the VMM invalidates it{dropped}"

    def _native_delivery(self, ev) -> str:
        d = ev.data
        what = describe_vector(d["vector"])
        no_exit = " (no VM exit: the guest's own fault)" if self.mode == "nested" else ""
        if d["vector"] == 14:
            return (f"· #PF at va {d['cr2']:#010x} (error {d['error_code']:#x}) delivered "
                    f"to the guest's handler at {d['handler']:#010x}{no_exit}")
        return f"· {what} delivered to the guest's handler at {d['handler']:#010x}"

    def _flush(self) -> None:
        story, self.story = self.story, None
        if story:
            self._emit(self._tell(story))

    def _tell(self, story: list) -> list[str]:
        if story[0].kind == "nested_walk":
            return self._tell_nested(story)
        first = story[0]
        va = first.va
        by = {}
        for ev in story:
            by.setdefault(ev.kind, ev)
        exit_ev = by.get("vm_exit")
        kind = next((ev.kind[:-len("_fault")] for ev in story if ev.kind.endswith("_fault")),
                    "unknown")
        self.faults += 1
        if self.brief and kind in self.told:
            return [self._one_fault_line_impl(kind, va, story, by)]
        self.told.add(kind)
        ec = first.data.get("error_code") or 0
        sw = first.data.get("walk")
        fetch = bool(sw and sw.get("fetch"))
        access = ("write" if ec & 2 else "fetch" if fetch else "read") + (
            ", user" if ec & 4 else ", kernel")
        lines = [f"── {kind} fault at va {va:#010x} ({access}) ── cycle {first.cycle:,}"]
        lines.append(" 1 TLB miss; the hardware walks the shadow table:" if not ec & 1 else
                     " 1 no TLB entry allows the write; the hardware walks the shadow table:")
        lines += _walk_lines(sw, "      ", "s", "ma")
        why = "not present" if not ec & 1 else "protection (read-only)"
        lines.append(f"      -> #PF error {ec:#x} ({why}), intercepted")
        eip = exit_ev.data.get("eip") if exit_ev else None
        gw = by.get("guest_walk")
        if gw is not None:
            lines.append(f" 2 VM exit at eip {eip:#010x}; the VMM walks the guest's table:")
            lines += _walk_lines(gw.data.get("walk"), "      ", "g", "pa")
        else:
            lines.append(f" 2 VM exit at eip {eip:#010x}; guest paging is off: "
                         f"pa = va (physical mode)")
        if kind == "true":
            tf = by.get("true_fault")
            lines.append(f" 3 true fault: the guest's own table denies it; inject #PF "
                         f"(error {tf.data['error_code']:#x}) into the guest")
            lines.append(" 5 VM entry at the guest's #PF handler")
            return lines
        pm = by.get("pmap_lookup")
        labels = {"hidden": "hidden fault: the guest maps it, the shadow does not (yet)",
                  "dirty": "hidden fault on a clean page: the VMM sets the guest's D bit",
                  "tracing": "tracing fault: a write to a write-protected guest page table",
                  "unsync": "the first write to a guest page table: let it go out of sync",
                  "wp-emulate": "CR0.WP=0 lets the kernel write a read-only page: emulate"}
        lines.append(f" 3 {labels.get(kind, kind)}")
        if pm is not None:
            alloc = " (allocated now, zeroed)" if pm.data["allocated"] else ""
            lines.append(f"      PMap: ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}{alloc}")
        emu = by.get("emulate")
        fill = by.get("shadow_fill")
        if emu is not None:
            changed = emu.data["changed"]
            shown = ", ".join(f"{i:#x}" for i in changed[:8]) + (" ..." if len(changed) > 8 else "")
            lines.append(f" 4 the VMM emulated the write: entries changed [{shown}]; "
                         f"{emu.data['dropped']} shadow entries dropped")
            lines.append(" 5 VM entry after the emulated instruction")
        elif fill is not None:
            lines.append(f" 4 spte := {fill.data['spte']:#010x}  {_flags(fill.data['spte'])}"
                         f"  (mpn {fill.data['mpn']:#x})")
            lines.append(" 5 VM entry: restart the faulting instruction")
        tlb = by.get("tlb_fill")
        if tlb is not None and emu is not None:
            lines.append(" 6 the hardware did the write through a one-instruction writable "
                         "spte; the TLB entry is read-only again")
        elif tlb is not None:
            rights = ("W" if tlb.data["writable"] else "r") + (" U" if tlb.data["user"] else " s")
            lines.append(f" 6 the hardware walk succeeds: TLB fill va {tlb.va:#010x} -> "
                         f"mpn {tlb.data['pn']:#x} ({rights})")
        return lines

    def _one_fault_line_impl(self, kind, va, story, by) -> str:
        ec = story[0].data.get("error_code") or 0
        access = ("write" if ec & 2 else "read") + (", user" if ec & 4 else ", kernel")
        line = f"· {kind} fault at va {va:#010x} ({access})"
        pm, fill, emu = by.get("pmap_lookup"), by.get("shadow_fill"), by.get("emulate")
        if kind == "true":
            return line + ": injected into the guest"
        if emu is not None:
            return line + f": emulated, {emu.data['dropped']} shadow entries dropped"
        if pm is not None and fill is not None:
            alloc = " (new)" if pm.data["allocated"] else ""
            return line + (f": ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}{alloc},"
                           f" spte {fill.data['spte']:#010x}")
        return line

    def _tell_nested(self, story: list) -> list[str]:
        first = story[0]
        by = {}
        for ev in story:
            by.setdefault(ev.kind, ev)
        self.faults += 1
        gpa = first.data["gpa"]
        if self.brief and "nested" in self.told:
            pm = by.get("pmap_lookup")
            new = " (new)" if pm and pm.data["allocated"] else ""
            mpn = f" -> mpn {pm.data['mpn']:#x}{new}" if pm else ""
            return [f"· nested fault at va {first.va:#010x}, gpa {gpa:#010x}: "
                    f"ppn {gpa >> 12:#x}{mpn}"]
        self.told.add("nested")
        lines = [f"── nested fault (EPT violation) at va {first.va:#010x}, gpa {gpa:#010x} "
                 f"── cycle {first.cycle:,}",
                 " 1 TLB miss; the hardware walks both dimensions (guest table, nested "
                 "table) and finds no nested entry:"]
        lines += grid_lines(first.data.get("grid") or [], fault=True)
        exit_ev = by.get("vm_exit")
        eip = exit_ev.data.get("eip") if exit_ev else 0
        lines.append(f" 2 VM exit (EPT violation) at eip {eip:#010x}; the exit names the "
                     "guest-physical address: no guest walk needed")
        pm = by.get("pmap_lookup")
        if pm is not None:
            alloc = " (allocated now, zeroed)" if pm.data["allocated"] else ""
            lines.append(f" 3 PMap: ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}{alloc}")
        fill = by.get("nested_fill")
        if fill is not None:
            lines.append(f" 4 npte := {fill.data['npte']:#010x}  "
                         f"{_flags(fill.data['npte'])}  (ppn {fill.data['ppn']:#x})")
        lines.append(" 5 VM entry: restart the faulting instruction")
        tlb = by.get("tlb_fill")
        if tlb is not None:
            rights = ("W" if tlb.data["writable"] else "r") + (" U" if tlb.data["user"] else " s")
            lines.append(f" 6 the 2D walk succeeds: TLB fill va {tlb.va:#010x} -> "
                         f"mpn {tlb.data['pn']:#x} ({rights})")
        return lines
