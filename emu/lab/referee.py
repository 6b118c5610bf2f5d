"""The lab's referee: after every VM exit, is the student's VMM right?

``checked(cls, referee)`` (``checked.py``) makes a subclass of the
student's VMM whose handlers call theirs and then let the referee look.  The referee knows the
answer independently of the student's code: it walks the guest's tables
itself (without setting A/D bits), walks the shadow the student left the
hardware, and reads the PMap.  The first thing wrong stops the run with a
``Violation`` naming the step, e.g.::

    step 3: you injected a true fault at va 0x0007f000 (write, user), but the
    guest's gpte 0x0007f067 allows it: a hidden fault

Rules (``Rules``) grow with the level: exact D bits from level 3, shadows
that follow the guest's page-table writes from level 4, a root cache from
level 5, out-of-sync tables from level 6.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw import paging
from ..hw.paging import PTE_D, PTE_P, PTE_PS, PTE_U, PTE_W, pdx, ptx
from ..vmm.api import PfResult

LIVELOCK = 64           # exits at one place without an instruction retired
FULL_EVERY = 128        # a look at every shadow entry every so many #PF exits
HANDLER_LIMIT = 5.0     # host seconds one handler may run


@dataclass(frozen=True)
class Finding:
    """What is wrong: the step it belongs to and the evidence."""

    step: str
    message: str

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"


class Violation(Exception):
    """Raised to end a run at the first finding."""

    def __init__(self, finding: Finding):
        super().__init__(str(finding))
        self.finding = finding


@dataclass(frozen=True)
class Rules:
    exact_dirty: bool = False       # level 3: a clean page is never writable
    follow_writes: bool = False     # level 4: shadows agree with the guest's tables
    oos: bool = False               # level 6: out-of-sync tables are excused


def access_text(write: bool, user: bool, fetch: bool = False) -> str:
    kind = "fetch" if fetch else "write" if write else "read"
    return f"{kind}, {'user' if user else 'kernel'}"


def error_code_text(ec: int) -> str:
    parts = ["protection" if ec & paging.PF_P else "not present",
             "write" if ec & paging.PF_W else "read", "user" if ec & paging.PF_U else "kernel"]
    if ec & paging.PF_RSVD:
        parts.append("reserved bit")
    return f"{ec:#x} ({', '.join(parts)})"


class _ReadOnly:
    """Memory whose walk sets no A/D bit (the referee's own walks)."""

    def __init__(self, mem):
        self.read32 = mem.read32

    def write32(self, pa: int, value: int) -> None:
        pass


class _RecordingGuest:
    """``hw.guest`` for a checked VMM: the real view, injections recorded."""

    def __init__(self, real, referee):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_referee", referee)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)

    def inject_page_fault(self, va: int, error_code: int) -> None:
        self._referee.injected.append((va, error_code))
        self._real.inject_page_fault(va, error_code)


class Referee:
    def __init__(self, rules: Rules):
        self.rules = rules
        self.injected: list[tuple[int, int]] = []
        self.emulated = 0          # hw.emulate_once calls in this exit's handler
        self.mon = None
        self.hw = None
        self._last = None
        self._repeats = 0
        self._exits = 0
        self.doing = None          # the handler running and its exit, for error lines

    # --- wiring -----------------------------------------------------------------------
    def attach(self, hw) -> None:
        self.hw = hw
        self.mon = hw._mon
        self.mon.handler_limit = HANDLER_LIMIT
        hw.guest = _RecordingGuest(hw.guest, self)
        emulate_once = self.mon.emulate_once

        def recorded():
            self.emulated += 1
            return emulate_once()
        self.mon.emulate_once = recorded       # (what hw.emulate_once calls)

    def fail(self, step: str, message: str):
        raise Violation(Finding(step, message))

    # --- a #PF exit -------------------------------------------------------------------
    def before_page_fault(self, exit):
        cpu = self.mon.cpu
        here = (exit.eip, exit.va, exit.error_code, cpu.icount)
        self._repeats = self._repeats + 1 if here == self._last else 1
        self._last = here
        if self._repeats > LIVELOCK:
            self.fail("step 5", f"the guest faulted {LIVELOCK} times in a row at va "
                      f"{exit.va:#010x} ({access_text(exit.write, exit.user, exit.fetch)}, eip "
                      f"{exit.eip:#010x}) without going on: each time you resume, the "
                      "shadow still refuses the access")
        del self.injected[:]
        self.emulated = 0
        if not self.hw.guest.paging:
            return None
        return self.guest_walk(exit)

    def guest_walk(self, exit):
        g = self.hw.guest
        return paging.walk(_ReadOnly(self.mon.guest), g.cr3, exit.va, write=exit.write,
                           user=exit.user, fetch=exit.fetch, wp=g.wp, pse=g.pse)

    def after_page_fault(self, exit, oracle, result) -> None:
        va, acc = exit.va, access_text(exit.write, exit.user, exit.fetch)
        denied = oracle is not None and oracle.fault
        self._check_result(va, result)
        if self.injected:
            iva, iec = self.injected[0]
            if not denied:
                gpte = _mapping_entry(oracle)
                what = (f"the guest's gpte {gpte:#010x} allows it" if oracle is not None
                        else "the guest runs with paging off (va = pa)")
                self.fail("step 3", f"you injected a true fault at va {va:#010x} ({acc}), "
                          f"but {what}: a hidden fault")
            if (iva, iec) != (va, oracle.error_code):
                hint = (": the exit's error code is the shadow's; the guest's walk has its own"
                        " (walk.error_code)" if iec == exit.error_code and iva == va else "")
                self.fail("step 3", f"you injected #PF at va {iva:#010x} with error code "
                          f"{error_code_text(iec)}, but the guest's walk of va {va:#010x} "
                          f"gives error code {error_code_text(oracle.error_code)}{hint}")
            self._check_accessed(va, oracle)
            return
        if denied:
            self.fail("step 3", f"the guest's tables deny the access at va {va:#010x} "
                      f"({acc}; {_why(oracle)}): a true fault -- inject it with "
                      f"hw.guest.inject_page_fault(va, error_code {oracle.error_code:#x})")
        if result not in (PfResult.RETRY, PfResult.SPURIOUS):
            return
        self._check_accessed(va, oracle)
        sw = self.shadow_walk(exit)
        ppn = (oracle.frame if oracle is not None else va) >> 12
        if sw.fault and exit.write and ppn in self.hw.shadow.tracked:
            self.fail("step 3", f"the access at va {va:#010x} ({acc}) writes the guest's "
                      f"page table at ppn {ppn:#x}, which the shadow tables write-protect: a "
                      "tracing fault -- let the write through once (hw.emulate_once) and drop the "
                      "shadow entries it changed, returning PfResult.EMULATE (level 4)")
        if sw.fault:
            self.fail("step 4", f"you returned RETRY, but the shadow still refuses the access "
                      f"at va {va:#010x} ({acc}; the hardware's walk: error code "
                      f"{error_code_text(sw.error_code)}): the instruction will fault again")
        want = self.mon.pmap.mpn_of.get(ppn)
        got = sw.frame >> 12
        if got != want:
            self.fail("step 4", f"the spte for va {va:#010x} maps mpn {got:#x}, but the PMap "
                      f"backs the guest's ppn {ppn:#x} with "
                      + (f"mpn {want:#x}" if want is not None else "no page")
                      + ": use the mpn hw.pmap.obtain gives")

    def shadow_walk(self, exit):
        mmu = self.mon.mmu
        return paging.walk(_ReadOnly(self.mon.machine.mem), mmu.cr3, exit.va,
                           write=exit.write, user=exit.user, fetch=exit.fetch, wp=True,
                           pse=False)

    # --- control registers ----------------------------------------------------------------
    def after_cr_write(self, exit) -> None:
        g = self.hw.guest
        now = {0: g.cr0, 3: g.cr3, 4: g.cr4}[exit.cr]
        if now != exit.value:
            self.fail(f"CR{exit.cr} write", f"the guest wrote {exit.value:#010x} to CR{exit.cr} "
                      f"but reads back {now:#010x}: record it (hw.guest.cr{exit.cr} = "
                      "exit.value)")

    # --- after every exit: the shadow ------------------------------------------------------
    def check_root(self, what: str) -> None:
        """The hardware walks the shadow of the guest's directory."""
        g = self.hw.guest
        root = self.hw.root
        if g.paging:
            want = ("pd", (g.cr3 & 0xFFFFF000) >> 12)
            if root is None or root.key != want:
                have = ("no shadow page" if root is None else
                        f"the shadow of directory {root.key[1] << 12:#010x}"
                        if root.key[0] == "pd" else f"shadow page {root.key}")
                step = "CR3 load" if what == "CR3 load" else "shadow root"
                self.fail(step, f"the guest's CR3 is {g.cr3:#010x}, but the hardware walks "
                          f"{have}: switch to the shadow of the guest's directory "
                          f"(hw.shadow.ensure(('pd', {want[1]:#x})), hw.tlb.load_root)")

    def after_page_fault_exit(self, exit, oracle) -> None:
        """After a #PF exit: the root, the shadow pages that hold va's
        entries, the shadows of a guest table it wrote -- and every shadow
        entry every ``FULL_EVERY`` exits (a full look costs a scan)."""
        what = f"the #PF at va {exit.va:#010x}"
        self.check_root(what)
        self._exits += 1
        if self._exits % FULL_EVERY == 0:
            return self.check_all(what)
        shadow = self.hw.shadow
        read32 = self.mon.guest.read32
        mpn_of, shared = self.mon.pmap.mpn_of, self.mon.pmap.shared
        root = self.hw.root
        if root is not None and root.key[0] == "pd":
            dx = pdx(exit.va)
            spde = root.entry(dx)
            if spde & PTE_P:
                self._check_spde(root, dx, spde, read32, what)
                child = shadow.by_mpn.get(spde >> 12)
                idx = ptx(exit.va)
                e = child.entry(idx) if child is not None else 0
                if e & PTE_P and not (self.rules.oos and child.key[0] == "pt"
                                      and child.key[1] in shadow.unsync):
                    self._check_spte(child, idx, e, read32, mpn_of, shared, what)
        if exit.write and oracle is not None and not oracle.fault:
            pages = [shadow.pages[k] for k in shadow.tracked.get(oracle.frame >> 12, ())
                     if k in shadow.pages]
            self._check_pages(pages, what)

    def check_all(self, what: str) -> None:
        """The root, and every present shadow entry agrees with the guest's
        tables and the PMap."""
        self.check_root(what)
        self._check_pages(list(self.hw.shadow.pages.values()), what)

    def _check_pages(self, pages, what: str) -> None:
        import numpy as np  # (here: the commands other than emu lab need no numpy)
        shadow = self.hw.shadow
        read32 = self.mon.guest.read32
        mpn_of, shared = self.mon.pmap.mpn_of, self.mon.pmap.shared
        for sp in pages:
            if not sp.present or shadow.pages.get(sp.key) is not sp:
                continue
            role = sp.key[0]
            if self.rules.oos and role == "pt" and sp.key[1] in shadow.unsync:
                continue
            arr = np.frombuffer(sp.page, dtype="<u4")
            for idx in np.flatnonzero(arr & PTE_P).tolist():
                e = int(arr[idx])
                if role in ("pd", "phys-pd"):
                    self._check_spde(sp, idx, e, read32, what)
                else:
                    self._check_spte(sp, idx, e, read32, mpn_of, shared, what)

    def _check_spde(self, sp, idx, e, read32, what) -> None:
        if sp.key[0] != "pd":
            return
        shadow = self.hw.shadow
        child = shadow.by_mpn.get(e >> 12)
        gpde = read32((sp.key[1] << 12) | idx * 4)
        if child is None:
            self.fail("isolation", f"spde[{idx:#x}] of {sp.key} points to mpn {e >> 12:#x}, "
                      "which is no shadow page table")
        va = idx << 22
        if not gpde & PTE_P:
            return self.stale(what, f"the spde for va {va:#010x} is present, but the "
                              f"guest's gpde is {gpde:#010x} (not present)")
        large = gpde & PTE_PS and self.hw.guest.pse
        ok = child.key == (("4m", sp.key[1], idx) if large else ("pt", gpde >> 12))
        if not ok:
            return self.stale(what, f"the spde for va {va:#010x} links shadow {child.key}, but the "
                       f"guest's gpde is {gpde:#010x}")
        # The spde's rights are the gpde's: more would let an access through
        # that the guest's directory entry refuses, whatever the spte says.
        if e & PTE_U and not gpde & PTE_U:
            self.fail("step 4", f"the spde {e:#010x} for va {va:#010x} lets user code reach "
                      f"pages whose gpde {gpde:#010x} is supervisor-only (link with the "
                      "gpde's U/S and R/W)")
        if e & PTE_W and not gpde & PTE_W:
            self.fail("step 4", f"the spde {e:#010x} for va {va:#010x} grants write where the "
                      f"gpde {gpde:#010x} is read-only (link with the gpde's U/S and R/W)")

    def _check_spte(self, sp, idx, e, read32, mpn_of, shared, what) -> None:
        role, mpn = sp.key[0], e >> 12
        if role == "phys-pt":
            ppn, gpte, name = (sp.key[1] << 10) | idx, None, "physical-mode spte"
        elif role == "4m":
            gpde = read32((sp.key[1] << 12) | sp.key[2] * 4)
            name = f"spte for va {(sp.key[2] << 22) | (idx << 12):#010x}"
            if not (gpde & PTE_P and gpde & PTE_PS):
                return self.stale(what, f"the {name} maps mpn {mpn:#x}, but the guest's gpde is "
                           f"now {gpde:#010x}")
            ppn, gpte = ((gpde & 0xFFC00000) >> 12) + idx, gpde
        else:
            gpte = read32((sp.key[1] << 12) | idx * 4)
            name = f"spte {e:#010x} (entry {idx:#x} of the shadow of table {sp.key[1]:#x})"
            if not gpte & PTE_P:
                return self.stale(what, f"the {name} maps mpn {mpn:#x}, but the guest's gpte is "
                           f"now {gpte:#010x} (not present)")
            ppn = gpte >> 12
        want = mpn_of.get(ppn)
        if want != mpn:
            if gpte is not None and role == "pt":
                return self.stale(what, f"the {name} maps mpn {mpn:#x}, but the guest's gpte "
                           f"{gpte:#010x} names ppn {ppn:#x}, which is in "
                                  + (f"mpn {want:#x}" if want is not None else "no page"))
            self.fail("step 4", f"the {name} maps mpn {mpn:#x}, but the PMap backs ppn "
                      f"{ppn:#x} with " + (f"mpn {want:#x}" if want is not None else
                                           "no page"))
        if gpte is None:
            return
        if e & PTE_U and not gpte & PTE_U:
            self.fail("step 4", f"the {name} lets user code reach a page whose gpte "
                      f"{gpte:#010x} is supervisor-only")
        if e & PTE_W:
            if not gpte & PTE_W:
                self.fail("step 4", f"the {name} grants write to a page whose gpte "
                          f"{gpte:#010x} is read-only")
            if self.rules.exact_dirty and not gpte & PTE_D:
                self.fail("step 4", f"spte {e:#010x} grants write to a page whose gpte "
                          f"{gpte:#010x} is clean (D=0): the guest will never see D set")
            if ppn in shared:
                self.fail("step 4", f"the {name} grants write to a page the host shares "
                          "between VMs: a write must exit and copy it first")

    def _check_result(self, va: int, result) -> None:
        """The result says what the handler did (step 5: how the guest goes on)."""
        if self.injected and result is not PfResult.INJECT:
            self.fail("step 5", f"you injected #PF at va {self.injected[0][0]:#010x} but "
                      f"returned {result}: the guest's handler runs next -- return "
                      "PfResult.INJECT")
        if result is PfResult.INJECT and not self.injected:
            self.fail("step 5", f"you returned PfResult.INJECT for the fault at va {va:#010x} "
                      "but injected nothing (hw.guest.inject_page_fault)")
        if self.emulated and result is not PfResult.EMULATE and not self.injected:
            self.fail("step 5", f"you let the instruction at va {va:#010x} through "
                      f"(hw.emulate_once) but returned {result}: it would run again -- return "
                      "PfResult.EMULATE")
        if result is PfResult.EMULATE and not self.emulated:
            self.fail("step 5", f"you returned PfResult.EMULATE for the fault at va {va:#010x} "
                      "but did not do the instruction's work (hw.emulate_once): the guest "
                      "would go on without it")

    def _check_accessed(self, va: int, oracle) -> None:
        """Every entry the hardware's walk would have set A in (the gpde it
        follows, even to a gpte that then faults; the gpte that maps) has
        A in the guest's memory."""
        if oracle is None:
            return
        for level in oracle.levels:
            if not level.value_after & paging.PTE_A:
                continue
            after = self.mon.guest.read32(level.entry_pa)
            if not after & paging.PTE_A:
                self.fail("step 2", f"after the fault at va {va:#010x} the guest's "
                          f"{level.name} at pa {level.entry_pa:#010x} is {after:#010x}, A "
                          "clear: walk the guest's table with hw.guest.walk(...), which "
                          "sets A (and D on a write) as the hardware would")

    # --- the host's hooks (level 7) ----------------------------------------------------
    def used_bits(self, mpn: int) -> list:
        """The sptes that map ``mpn`` with A set."""
        return [(sp, idx) for sp, idx in self.mon.shadow.sptes_mapping(mpn)
                if sp.entry(idx) & paging.PTE_A]

    def after_referenced(self, ppn: int, mpn: int, used: list, result) -> None:
        """``referenced(ppn, mpn)`` returned ``result``; ``used``: the sptes
        with A set before the call."""
        what = f"referenced(ppn {ppn:#x}, mpn {mpn:#x})"
        if bool(result) != bool(used):
            said = "used" if result else "not used"
            truth = (f"the spte {used[0][0].entry(used[0][1]):#010x} (entry "
                     f"{used[0][1]:#x} of shadow page mpn {used[0][0].mpn:#x}) had A set"
                     if used else "no spte that maps it had A set")
            self.fail("reclaim", f"{what} said the page was {said}, but {truth}: "
                      "test and clear the A bits of every spte that maps mpn "
                      "(hw.shadow.sptes_mapping, hw.shadow.test_and_clear_accessed)")
        left = self.used_bits(mpn)
        if left:
            sp, idx = left[0]
            self.fail("reclaim", f"after {what} the spte {sp.entry(idx):#010x} (entry "
                      f"{idx:#x} of shadow page mpn {sp.mpn:#x}) still has A set: the "
                      "next call cannot tell whether the guest used the page since")
        if result:
            mmu = self.mon.mmu
            for t in mmu._tlbs():
                for e in t.valid_entries():
                    if not e.large and e.pn == mpn:
                        self.fail("reclaim", f"after {what} the TLB still caches va "
                                  f"{e.vpn << 12:#010x} -> mpn {mpn:#x}: the guest's "
                                  "next use of the page hits it and sets no A bit, so "
                                  "it will look unused (hw.tlb.forget_page(mpn) once "
                                  "its A bits are cleared)")

    def stale(self, what: str, evidence: str) -> None:
        if self.rules.follow_writes:
            self.fail("step 3 (guest page-table write)",
                      f"{evidence} (seen after {what}): when the guest writes its page "
                      "table, drop or update the shadow entries made from what it wrote")


def _mapping_entry(walk) -> int:
    return walk.levels[-1].value if walk.levels else 0


def _why(walk) -> str:
    kind = walk.fault_kind
    lv = walk.levels[-1]
    return f"{lv.name} {lv.value:#010x}: {kind}, error code {walk.error_code:#x}"
