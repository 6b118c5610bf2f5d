"""``emu lab new LEVEL``: a skeleton VMM and the level's handout.

The skeleton is one class.  The methods the levels up to LEVEL ask for are
TODOs that name their steps and raise ``NotImplementedError`` with a line
that says where to start; the others are bound to the lab's given code.
"""

from __future__ import annotations

from .levels import LEVELS, Level

HEADER = '''"""My shadow-paging VMM for emu lab, level {n}: {title}.

    emu lab check {file} --level {n}
    emu step lab_touch --vmm {file}       (watch your six steps)

The API: emu/vmm/api.py (python -m pydoc emu.vmm.api).  self.hw is the
platform: hw.guest (the guest's registers, memory and walk), hw.pmap (the
machine page of a guest page), hw.shadow (the shadow tables), hw.tlb (the
hardware TLB and CR3), hw.filled (tell the story that step 4 is done).
"""

from emu.hw.paging import PTE_D, PTE_U, PTE_W, pdx, ptx  # noqa: F401  (entry bits, indexes)
from emu.lab import given
from emu.vmm.api import PfResult, ShadowVmm


class MyVmm(ShadowVmm):
    name = "my VMM"
'''

PAGE_FAULT = '''
    def handle_page_fault(self, exit):
        """A #PF exit (step 1 was the hardware's): exit.va, exit.write,
        exit.user, exit.fetch, exit.error_code, exit.eip."""
        # TODO step 2: the guest's walk of exit.va for the same access:
        #   walk = self.hw.guest.walk(exit.va, write=..., user=..., fetch=...)
        #   (it sets the guest's A and D bits as its hardware would).  With
        #   guest paging off (not self.hw.guest.paging) there is no walk:
        #   the guest's va is its physical address.{true}
        # TODO step 3: a hidden fault: the machine page of the guest's page,
        #   mpn = self.hw.pmap.obtain(ppn, exit.va, exit.write)
        #   where ppn = walk.frame >> 12.{tracing}
        # TODO step 4: self.fill_shadow(...)
        # TODO step 5: return PfResult.RETRY -- the instruction restarts
        raise NotImplementedError("start here: step 2 of handle_page_fault "
                                  "(walk the guest's table)")

    def fill_shadow(self, va, walk, ppn, mpn):
        """Step 4: the spde and spte that map va -> mpn."""
        # TODO: table, _ = self.hw.shadow.ensure(("pt", gpde >> 12)) -- the
        #   shadow of the guest's page table (("phys-pt", pdx(va)) with
        #   paging off; ("4m", cr3 >> 12, pdx(va)) for a guest 4 MiB page);
        #   self.hw.shadow.link(self.hw.root, pdx(va), table, gpde);
        #   spte = self.hw.shadow.set_spte(table, ptx(va), mpn,
        #                                  gpte, ppn, writable);
        #   self.hw.filled(va, mpn, spte).  The guest's entries, as its walk
        #   left them: gpde = walk.levels[0].value_after and gpte =
        #   walk.levels[1].value_after (a 4 MiB page's gpde is its own
        #   gpte); with paging off the guest allows everything: both
        #   PTE_W | PTE_U.{dirty}
        raise NotImplementedError("step 4: fill_shadow")
'''

TRUE = '''
        #   Level 2: if walk.fault, the guest's tables deny the access: a true
        #   fault.  self.hw.guest.inject_page_fault(exit.va, walk.error_code),
        #   and drop what the shadow and TLB hold for va (a #PF invalidates
        #   them, Intel SDM 4.10.4.1: given.forget_page(self, exit.va));
        #   return PfResult.INJECT.'''

TRACING = '''
        #   Level 4: a write to a guest page table (ppn in self.hw.shadow.tracked)
        #   is a tracing fault: let the instruction through once (set_spte with
        #   force=True, then self.hw.emulate_once()), take the write permission
        #   back (shadow.clear_write, hw.tlb.downgrade), compare the table page
        #   before and after (hw.guest.read) and drop the shadow entries made
        #   from the entries it changed (shadow.sync_entries(ppn, changed));
        #   return PfResult.EMULATE.'''

DIRTY = '''
        #   Level 3: writable only if the gpte allows writes AND its D bit is
        #   set, so that the first write exits and the walk sets D.'''

CONTROL = {
    5: '''
    def handle_cr3_write(self, exit):
        """Level 5: the guest loads CR3 (exit.value)."""
        # TODO: record it (self.hw.guest.cr3 = exit.value); keep the shadows
        #   you have; switch the hardware to the shadow of the new directory:
        #   root, _ = self.hw.shadow.ensure(("pd", exit.value >> 12));
        #   self.hw.tlb.load_root(root)
        raise NotImplementedError("handle_cr3_write: switch to the new directory's shadow")
''',
    6: '''
    def handle_invlpg(self, exit):
        """Level 6: INVLPG exit.va -- and, with out-of-sync tables, every
        invalidation event brings the written tables back in sync
        (shadow.mark_unsync on the first write, shadow.resync at CR3 loads,
        CR0.PG/WP and CR4.PGE/PSE changes; the va's entries at INVLPG and at
        a #PF)."""
        # TODO
        raise NotImplementedError("handle_invlpg: level 6")

    def handle_cr0_write(self, exit):
        # TODO (level 6): record it; PG or WP changed: flush, resync
        raise NotImplementedError("handle_cr0_write: level 6")

    def handle_cr4_write(self, exit):
        # TODO (level 6): record it; PSE or PGE changed: flush, resync
        raise NotImplementedError("handle_cr4_write: level 6")
''',
    7: '''
    def evictable(self, ppn, mpn):
        """Level 7: may the host take guest page ppn (in mpn) back?"""
        # TODO: not a guest table you shadow (ppn in self.hw.shadow.tracked)
        raise NotImplementedError("evictable: level 7")

    def referenced(self, ppn, mpn):
        """Level 7: did the guest use the page since the host last asked?"""
        # TODO: test and clear the A bits of the sptes that map mpn
        #   (shadow.sptes_mapping, shadow.test_and_clear_accessed); if any was
        #   set, hw.tlb.forget_page(mpn) so that the next use sets A again
        raise NotImplementedError("referenced: level 7")

    def unmap_page(self, ppn, mpn):
        """Level 7: the host takes mpn back: no spte, no TLB entry may keep it."""
        # TODO: shadow.drop_mappings(mpn); hw.tlb.forget_page(mpn)
        raise NotImplementedError("unmap_page: level 7")
''',
}

GIVEN = {
    5: "    handle_cr3_write = given.handle_cr3_write\n",
    6: ("    handle_cr0_write = given.handle_cr0_write\n"
        "    handle_cr4_write = given.handle_cr4_write\n"
        "    handle_invlpg = given.handle_invlpg\n"),
    7: ("    evictable = given.evictable\n    referenced = given.referenced\n"
        "    unmap_page = given.unmap_page\n"),
}


def skeleton(n: int, file: str = "vmm.py") -> str:
    lv = _level(n)
    text = HEADER.format(n=n, title=lv.title, file=file)
    text += PAGE_FAULT.format(true=TRUE if n >= 2 else "", tracing=TRACING if n >= 4 else "",
                              dirty=DIRTY if n >= 3 else "")
    for k in (5, 6, 7):
        if n >= k:
            text += CONTROL[k]
    given = "".join(GIVEN[k] for k in (5, 6, 7) if n < k)
    if given:
        text += "\n    # Given by the lab (a later level asks you to write them).\n" + given
    return text


def handout(n: int, file: str = "vmm.py") -> str:
    lv = _level(n)
    guests = ", ".join(f"`{t.name}`" for t in lv.tests)
    earlier = "; and the guests of the levels before" if n > 1 else ""
    reading = "\n".join(f"* {r}" for r in lv.reading)
    rules = [
        "the guest's output, exit status and outcome equal native's",
        "after every exit: the hardware walks the shadow of the guest's page directory; "
        "every shadow entry maps the machine page the PMap gives the guest's page, with "
        "no right the guest's entry lacks",
        "after every #PF exit: a true fault is injected with the guest's error code and "
        "CR2, a hidden one is not; a RETRY leaves the shadow allowing the access; the "
        "guest's A bit is set",
        "your handlers run at most 5 s each; an exception names your file and line",
    ]
    if lv.rules.exact_dirty:
        rules.append("no spte is writable while its gpte is clean (D=0)")
    if lv.rules.follow_writes:
        rules.append("every shadow entry agrees with the guest's current tables"
                     + (" (out-of-sync tables excepted until the next invalidation event)"
                        if lv.rules.oos else ""))
    if any(t.efficiency for t in lv.tests):
        rules.append("the #PF exits are at most 1.5 times the built-in VMM's")
    if any(t.vms > 1 for t in lv.tests):
        rules.append("several copies share a machine too small for them, the resource-"
                     "control invariant checked after every exit and host event")
    checks = "\n".join(f"* {r}" for r in rules)
    return f"""# emu lab, level {n}: {lv.title}

**You write**: {lv.writes}.

Your VMM is `{file}`: one class, a subclass of `emu.vmm.api.ShadowVmm`.
The TODOs in it name the steps of the lecture's six (docs/design.md).

## Read first
{reading}

## What the checker runs
The guests {guests}{earlier}, under your VMM with `--shadow-policy {lv.policy}`,
each against its native run.  It checks:

{checks}

The first thing wrong stops the guest and names its step, with the evidence.

## How to work
    emu lab check {file} --level {n}             # the score and what is wrong
    emu run lab_touch --vmm {file}               # a guest under your VMM
    emu step lab_touch --vmm {file}              # its faults, step by step
    emu compare lab_touch --vmm {file}           # against native and nested

The lab's guests are in `emu/lab/guests/`; `emu lab list` shows every level.
"""


def _level(n: int) -> Level:
    for lv in LEVELS:
        if lv.number == n:
            return lv
    raise ValueError(f"no level {n}: the levels are 1 to {len(LEVELS)} (emu lab list)")
