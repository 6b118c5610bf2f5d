"""The VMM API: what a shadow-paging VMM implements, and what it may use.

A VMM is one class, a subclass of ``ShadowVmm``.  The hardware hands it
typed VM exits (``emu.hw.exits``) one at a time; it answers each through a
few narrow collaborators, given to it as ``self.hw`` (``platform.py``):

    hw.guest    the guest's CPU and memory: its control registers (cr0, cr3,
                cr4 as the guest wrote them), guest-physical reads and
                writes, ``walk(va, ...)`` -- the guest's page walk (step 2),
                setting A/D bits as the hardware would -- ``inject_page_fault``
                and ``skip`` (the intercepted instruction is done)
    hw.pmap     the PMap: ``lookup(ppn)``, ``obtain(ppn, va, write)`` -- the
                machine page for a guest page, allocated, read back from the
                swap disk or copied from a shared page (step 3) -- and
                ``is_shared(ppn)``
    hw.shadow   the shadow tables (``ShadowTables``): shadow pages keyed by
                (guest table ppn, role), ``ensure``, ``link`` (an spde),
                ``set_spte``, ``clear_write``, ``drop_entry``, ``zap``,
                ``drop_mappings``, ``drop_all``; write protection of guest
                table pages comes with shadowing them
    hw.tlb      the hardware TLB: ``flush``, ``invlpg``, ``load_root``
                (switch the hardware's CR3 to a shadow root), ...
    hw.filled   tell the story: the fault's spte is written (step 4)

Everything it does goes through them: it cannot reach machine memory of
another VM (``set_spte`` refuses an mpn the PMap does not give this VM), and
what it leaves behind is checked by the resource-control invariant.  The
VMM's own time (each step's cost) and the trace are the platform's
business.

The six steps of a #PF exit, as ``handle_page_fault`` lives them::

    1  (the hardware) TLB miss; the walk of the shadow faults: VM exit
       -- the exit record carries the walk (``exit.walk``)
    2  walk the guest's table for the faulting va       hw.guest.walk
    3  classify: a TRUE fault (the guest denies it)      hw.guest.inject_page_fault
       or a HIDDEN fault (the guest allows it): the
       PMap's machine page for the guest page             hw.pmap.obtain
    4  write the spte (and the spde above it)            hw.shadow.set_spte, hw.filled
    5  return PfResult.RETRY: the instruction restarts
    6  (the hardware) the walk succeeds, the TLB fills

The built-in VMM (``builtin.py``) is written against this API too.
"""

from __future__ import annotations

import enum

from ..hw.exits import (  # noqa: F401  (the exits a VMM receives)
    CrReadExit,
    CrWriteExit,
    EptViolationExit,
    HaltExit,
    InvlpgExit,
    IoExit,
    PageFaultExit,
    VmExit,
)


class PfResult(enum.Enum):
    """What the handling of a #PF exit came to (KVM's ``RET_PF_*``)."""

    RETRY = "retry"          # the shadow now maps it: restart the instruction (step 5)
    INJECT = "inject"        # a true fault: the guest's own handler runs next
    EMULATE = "emulate"      # the VMM did the instruction's work; the guest goes on after it
    SPURIOUS = "spurious"    # nothing to fix (another exit fixed it): restart


class Fault(enum.Enum):
    """What a #PF exit turned out to be (step 3), for statistics and the story."""

    TRUE = "true"            # the guest's tables deny the access: inject #PF
    HIDDEN = "hidden"        # the guest allows it, the shadow lacked it: fill, restart
    DIRTY = "dirty"          # a write to a clean page mapped read-only: set the guest's D
    TRACING = "tracing"      # a write to a write-protected guest table: emulate, sync
    UNSYNC = "unsync"        # oos: first write to a guest table: let it go out of sync
    WP_EMULATE = "wp-emulate"  # CR0.WP=0 lets the kernel write a read-only page: emulate
    COW = "cow"              # a write to a page the VMM shares: break the sharing


class Action(enum.Enum):
    """The monitor's answer to the vCPU after an exit."""

    RESUME = "resume"        # back to the guest at the same instruction
    INJECT = "inject"        # the guest's handler for an injected exception runs next
    EMULATE = "emulate"      # the instruction is done; the guest goes on after it
    HALT = "halt"            # the vCPU halts until an interrupt
    IO = "io"                # the system performs the port I/O of the exit
    CRASH = "crash"          # the run ends: a bus error, machine memory exhausted ...
    SHUTDOWN = "shutdown"    # the run ends: a triple fault


class VmmError(Exception):
    """The VMM broke a rule of the API (an isolation violation ...)."""


class ShadowVmm:
    """A shadow-paging VMM: subclass it and implement the handlers.

    ``self.hw`` is the platform (see the module doc); ``self.policy`` the
    ``--shadow-policy`` the run was given (a VMM may ignore it).  Every
    handler is plain code: the platform runs it in the VMM's context and
    takes care of simulated time.
    """

    #: One line for ``emu lab`` and the stepper's title.
    name = "a shadow-paging VMM"

    def __init__(self, hw, policy: str = "trace-cache"):
        self.hw = hw
        self.policy = policy

    def start(self) -> None:
        """The VM is about to run with guest paging off: give the hardware
        a root, the identity ("physical mode") shadow -- va = pa, through
        the PMap -- whose entries ``handle_page_fault`` fills on demand."""
        root, _ = self.hw.shadow.ensure(("phys-pd", 0))
        self.hw.tlb.load_root(root)

    # --- the exits ------------------------------------------------------------------
    def handle_page_fault(self, exit: PageFaultExit) -> PfResult:
        """A #PF the hardware intercepted: steps 2 to 5."""
        raise NotImplementedError("handle_page_fault: steps 2-5 of a #PF exit")

    def handle_cr3_write(self, exit: CrWriteExit) -> None:
        """The guest loads CR3: record it (``hw.guest.cr3 = exit.value``) and
        switch the hardware to the shadow of its new directory."""
        raise NotImplementedError("handle_cr3_write: a guest CR3 load")

    def handle_cr0_write(self, exit: CrWriteExit) -> None:
        """The guest writes CR0 (paging on or off, WP)."""
        raise NotImplementedError("handle_cr0_write: a guest CR0 write")

    def handle_cr4_write(self, exit: CrWriteExit) -> None:
        """The guest writes CR4 (PSE, PGE)."""
        raise NotImplementedError("handle_cr4_write: a guest CR4 write")

    def handle_invlpg(self, exit: InvlpgExit) -> None:
        """The guest invalidates the TLB entry of ``exit.va``."""
        raise NotImplementedError("handle_invlpg: a guest INVLPG")

    # --- the host's hooks (reclaim and sharing) -------------------------------------
    # The host calls them only when machine memory runs short or pages are
    # shared (``--machine-mib``, ``--share-interval``); ``emu lab`` level 7.
    def evictable(self, ppn: int, mpn: int) -> bool:
        """May the host take guest page ``ppn`` (in machine page ``mpn``)
        back?  (Not a guest table the VMM shadows: it reads those itself.)"""
        raise NotImplementedError("evictable: may the host take a guest page back?")

    def referenced(self, ppn: int, mpn: int) -> bool:
        """Did the guest use the page since the host last asked?  (Read and
        clear the A bits the hardware set in the sptes that map it.)"""
        raise NotImplementedError("referenced: did the guest use the page lately?")

    def unmap_page(self, ppn: int, mpn: int) -> None:
        """The host takes ``mpn`` back (or shares it): every spte mapping it
        must go, and every TLB entry."""
        raise NotImplementedError("unmap_page: drop every mapping of a page the host takes")

    def shrink_tables(self, enough) -> int:
        """Optional.  Machine memory has run out and no guest page can go:
        free shadow pages the hardware is not walking now (they are a
        cache) until ``enough()`` says so; returns how many were freed.  The
        host may ask in the middle of any exit, this VM's own included, so
        only a VMM that keeps no shadow page between its own steps may free
        them (the built-in one keeps the root it loaded and its
        physical-mode root).  By default none is freed."""
        return 0

    # --- statistics -----------------------------------------------------------------
    def stats(self) -> dict:
        """Counters of the VMM's own (merged into the run's statistics)."""
        return {}


__all__ = ["Action", "CrReadExit", "CrWriteExit", "EptViolationExit", "Fault", "HaltExit",
           "InvlpgExit", "IoExit", "PageFaultExit", "PfResult", "ShadowVmm", "VmExit",
           "VmmError"]
