"""The CPU: architectural state and the dispatcher.

Exceptions and interrupts are delivered by ``events.EventDelivery``, the
system instructions executed by ``sysinsns.SystemInstructions``, the blocks
the dispatcher runs made by ``cpu_blocks.BlockMaker`` (mixins of ``Cpu``);
``stops.py`` holds what a batch hands back.

``Cpu.run(max_insns, max_cycles)`` executes translated blocks until a budget
is spent or something needs the world outside the CPU, and returns a
``Stop`` saying which: the budget, ``hlt``, an I/O instruction (the system
layer talks to devices at exact instruction boundaries), a VM exit (an
intercepted event, see ``intercepts``), a triple fault or a bus error.

Ring switches: CPL 3 -> 0 on an interrupt or exception loads esp from the
TSS's esp0 field (the dword at ``tss_base + 4``; ``ltr r16`` loads
``tss_base`` from the TSS descriptor its selector names in the GDT, which
``lgdt`` locates; no other descriptor is read) and pushes ss, esp, eflags,
cs, eip and the error code, as x86 does; ``iret`` pops them.  Selectors are fixed: kernel
cs 0x08, user cs 0x1B, user ss 0x23 (their low two bits are the CPL).

IDT entries are 8 bytes: ``dd handler, attr`` where attr bit 15 is P,
bits 14-13 the DPL and bits 11-8 the type (0xE interrupt gate, clears IF;
0xF trap gate).  ``lidt`` loads 6 bytes: a 16-bit limit and a 32-bit base.
"""

from __future__ import annotations

from .. import isa
from .cpu_blocks import BlockMaker
from .devices import CONSOLE_PORT
from .events import EventDelivery
from .exceptions import BudgetEnd, CodeWritten, GuestFault
from .memory import BusError
from .mmu import Mmu
from .semantics import ALL_FLAGS, PFB, SEMANTICS, Gen
from .stops import INTERCEPTS, Stop  # noqa: F401  (the CPU's public surface)
from .stops import StopRun as _StopRun
from .sysinsns import SystemInstructions, _opname
from .translate import (
    Block,
)


class Cpu(EventDelivery, SystemInstructions, BlockMaker):
    """One x86-like processor wired to an MMU."""

    STATS = {
        "instructions": "instructions retired",
        "cycles": "cycles spent by the CPU (guest instructions, walks, deliveries)",
        "exceptions": "exceptions delivered through the IDT, by vector",
        "interrupts": "external interrupts delivered",
        "blocks_translated": "basic blocks translated to Python",
    }

    def __init__(self, mmu: Mmu, costs):
        self.mmu = mmu
        self.costs = costs
        self.r = [0] * 8              # eax ecx edx ebx esp ebp esi edi
        self.eip = 0
        self.cf = self.zf = self.sf = self.of = 0
        # PF and AF are kept lazily (see semantics.py): PF is the parity of
        # pf's low byte, AF bit 4 of af ^ pf.  EFLAGS = 0x2 at reset.
        self.pf = 1
        self.af = 1
        self.df = 0
        self.iflag = 0
        self.cpl = 0
        # Guest-visible control registers (under a VMM the hardware's own
        # paging state lives in the MMU and may differ).
        self.cr0 = self.cr2 = self.cr3 = self.cr4 = 0
        self.idt_base = 0
        self.idt_limit = 0
        self.tss_base = 0
        self.gdt_base = 0
        self.gdt_limit = 0
        self.irq_pending = False
        self.intercepts: frozenset = frozenset()
        self.nested = False           # nested paging: the MMU walks in two dimensions
        self.vectoring: tuple | None = None   # event being delivered when an exit hit
        self._delivering_eip = 0
        self.delivery_faulted = False
        self.partial: int | None = None
        self.iters = 0                # iterations run by the last loop block
        self.rep_overwrote_itself = False   # a rep stored over its own bytes (see _string)
        self.string_done = 0          # elements done by the running string instruction
        self.icount = 0
        self.cycles = 0
        self.exceptions: dict[int, int] = {}
        self.interrupts = 0
        self.blocks_translated = 0
        # (pn, block key) -> (the bytes it was decoded from, the block)
        self._known: dict[tuple[int, int], tuple[bytes, Block]] = {}
        # Loop blocks run their back edge without a fetch lookup: exact only
        # when the loop's data accesses cannot evict the code's entry, i.e.
        # with a split ITLB/DTLB (repeated lookups of one page change no order).
        self.loop_blocks = mmu.itlb is not mmu.dtlb
        self.on_event = None      # callable(kind, **data) for the trace, or None
        # An out to the console ends the batch (under a VMM: it exits);
        # with ``console_out`` set (by the system, for a batch nobody
        # watches), the batch's counts so far are added and
        # ``console_out(detail, insns, cycles)`` says whether the next
        # batch starts here at once: its (max_insns, max_cycles) -- the
        # system wrote the character (and answered the exit) -- or None --
        # the batch returns the io stop (or the exit), nothing more to count.
        self.console_out = None
        # When no other event can come before the batch ends, the system
        # sets ``console_direct(value)`` too: an out to the console writes
        # the character (and under a VMM answers the I/O exit) and the
        # batch goes on, as after any instruction -- or it returns False,
        # and the out goes the way above.  The same figures: nothing else
        # can look in between.
        self.console_direct = None
        # A rep's chunk ends the batch (``REP_CHUNK``) so that others get
        # their turn.  When nobody could take it (``console_direct``'s
        # case), the system sets ``rep_in_place(cost)``: True -- the
        # cycles owed so far leave the batch within the run's budget -- and
        # the batch goes on at the rep as the next one would have begun.
        self.rep_in_place = None
        self._system = {opcode: getattr(self, name) for opcode, name in _SYSTEM_OPS}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_known"] = {}           # a cache: a copy of the CPU decodes again
        return state

    # --- flags -----------------------------------------------------------
    @property
    def eflags(self) -> int:
        return (isa.EFLAGS_FIXED | (self.cf and isa.CF) | PFB[self.pf & 0xFF]
                | ((self.af ^ self.pf) & isa.AF) | (self.zf and isa.ZF)
                | (self.sf and isa.SF) | (self.iflag and isa.IF) | (self.df and isa.DF)
                | (self.of and isa.OF))

    def set_eflags(self, value: int, allow_if: bool = True) -> None:
        """Load the flags the machine models (CF PF AF ZF SF DF OF, and IF
        when ``allow_if``); the others read as 0."""
        self.cf = int(bool(value & isa.CF))
        self.zf = int(bool(value & isa.ZF))
        self.sf = int(bool(value & isa.SF))
        self.of = int(bool(value & isa.OF))
        self.pf = 0 if value & isa.PF else 1
        self.af = self.pf ^ (value & isa.AF)
        self.df = int(bool(value & isa.DF))
        if allow_if:
            self.iflag = int(bool(value & isa.IF))

    def registers(self) -> dict[str, int]:
        """Final architectural registers, by name (what the stats report)."""
        regs = {name: self.r[i] for i, name in enumerate(isa.REGS32)}
        regs.update(eip=self.eip, eflags=self.eflags, cpl=self.cpl,
                    cr0=self.cr0, cr2=self.cr2, cr3=self.cr3, cr4=self.cr4)
        return regs

    def set_cpl(self, cpl: int) -> None:
        self.cpl = cpl
        self.mmu.set_user(cpl == 3)

    # --- the dispatcher ------------------------------------------------------
    def run(self, max_insns: int, max_cycles: int, irq: bool = True) -> Stop:
        """Run until ``max_insns`` retire, ``max_cycles`` pass, or a stop.

        The counts of the batch are added to ``icount`` and ``cycles`` and
        filled into the returned ``Stop``."""
        mmu = self.mmu
        ifast = mmu.ifast
        itlb = mmu.itlb
        icount = cycles = drefs = ilookups = 0
        cycles0 = self.cycles
        # Paging changes only with a mov to CR0, which ends the batch: every
        # lookup of this batch was made in the paging state it starts in.
        paging = mmu.paging
        itouch = itlb.touch if itlb.policy == "lru" and paging else None
        b = None
        stop = None
        eip = self.eip
        mmu.env["_smc"] = False
        self.partial = None
        try:
            while stop is None:
                try:
                    if self.vectoring is not None:
                        icount += self._redeliver()
                    if self.irq_pending and self.iflag and irq:
                        self._interrupt()
                    eip = self.eip
                    while icount < max_insns and cycles < max_cycles:
                        b = None
                        ilookups += 1          # this block's fetch (counted even if it faults)
                        blocks = ifast.get(eip >> 12)
                        if blocks is None:
                            mmu.translate(eip, False, True, False)
                            blocks = ifast[eip >> 12]
                        elif itouch is not None and eip >> 12 != itlb.recent:
                            itouch(eip >> 12)
                        b = blocks.get(eip)
                        if b is None:
                            b = self._translate(eip, 0)
                        fn, n, c, d, loop, _ = b
                        if n > max_insns - icount:
                            b = self._fitting(blocks, eip, b, max_insns - icount)
                            fn, n, c, d, loop, _ = b
                        if loop:
                            eip = fn(max_insns - icount, max_cycles - cycles, eip)
                            it = self.iters
                            icount += n * it
                            cycles += c * it
                            drefs += d * it
                            ilookups += it - 1     # one fetch per iteration
                        else:
                            eip = fn(eip)
                            icount += n
                            cycles += c
                            drefs += d
                    self.eip = eip
                    stop = Stop("budget")
                except (GuestFault, CodeWritten) as f:
                    if b is not None:
                        k = self.partial
                        if k is not None:
                            meta = b.meta
                            it = self.iters if b.loop else 0
                            icount += k + it * b.ninsns
                            cycles += meta.cycles_before[k] + it * b.cycles
                            drefs += meta.drefs_before[k] + it * b.drefs
                            ilookups += it
                            eip += meta.offsets[k]     # (eip: where the block began)
                    self.partial = None
                    b = None
                    self.eip = eip
                    if f.__class__ is CodeWritten:
                        # The block stored to translated code: it ended after
                        # that instruction, and the batch goes on there,
                        # translated anew.
                        mmu.env["_smc"] = False
                        continue
                    if f.__class__ is BudgetEnd:
                        stop = Stop("budget")   # between two pieces of a block
                        continue
                    stop = self._exception(f, eip)
                except _StopRun as s:
                    icount += s.retired
                    k = self.partial
                    if k is not None:
                        # An out inside a block (``inline_out``): what ran
                        # before it, and the out's own cycles.
                        self.partial = None
                        meta = b.meta
                        icount += k
                        cycles += (meta.cycles_before[k + 1] if k + 1 < b.ninsns
                                   else b.cycles)
                        drefs += meta.drefs_before[k]
                    elif b is not None:
                        cycles += b.cycles
                    b = None
                    detail = s.detail
                    if (s.reason == "budget" and self.rep_in_place is not None
                            and "rep" in detail and self.rep_in_place(0)):
                        continue            # the rep goes on in this batch
                    split = self.console_out
                    if split is None or (s.reason != "io" and s.reason != "io-exit") \
                            or detail["port"] != CONSOLE_PORT or detail["value"] is None:
                        stop = Stop(s.reason, detail=detail)
                        continue
                    # A character for the console: the batch ends here for the
                    # system, which may let the next one go on in place.
                    stall = mmu.stall
                    mmu.stall = 0
                    self.icount += icount
                    self.cycles += cycles + stall
                    if paging:
                        mmu.dtlb.lookups += drefs
                        mmu.itlb.lookups += ilookups
                    budgets = split(detail, icount, self.cycles - cycles0)
                    icount = cycles = drefs = ilookups = 0
                    cycles0 = self.cycles
                    if budgets is None:                     # counted already
                        stop = Stop("io", detail=detail) if s.reason == "io" else self._exit(
                            "io", detail["eip"], port=CONSOLE_PORT, value=detail["value"],
                            reg=None, next_eip=detail["next_eip"])
                    else:
                        max_insns, max_cycles = budgets
        except BusError as e:
            if b is not None and self.partial is not None:
                k = self.partial
                it = self.iters if b.loop else 0
                icount += k + it * b.ninsns       # what the block retired before it
                cycles += b.meta.cycles_before[k] + it * b.cycles
                eip += b.meta.offsets[k]          # (eip: where the block began)
            self.partial = None
            self.eip = eip
            stop = Stop("crash", detail={"message": str(e), "eip": eip})
        stall = mmu.stall
        mmu.stall = 0
        self.icount += icount
        # deliveries during the batch added to self.cycles directly
        self.cycles += cycles + stall
        if paging:
            mmu.dtlb.lookups += drefs
            mmu.itlb.lookups += ilookups
        stop.insns = icount
        stop.cycles = self.cycles - cycles0
        return stop

    # --- statistics -------------------------------------------------------
    def stats(self) -> dict:
        return {"instructions": self.icount, "cycles": self.cycles,
                "exceptions": {str(k): v for k, v in sorted(self.exceptions.items())},
                "interrupts": self.interrupts,
                "blocks_translated": self.blocks_translated}



# The method of each system instruction's row, by opcode (``Cpu._system``).
_SYSTEM_OPS = tuple((row.opcode, "_op_" + _opname(row)) for row in isa.TABLE
                    if row.kind in (isa.SYSTEM, isa.PRIV))

_SAMPLE_ARG = {"m": isa.Mem(isa.EBX, None, 1, 4), "mb": isa.Mem(isa.EBX, None, 1, 4, True)}


def _check_semantics() -> None:
    """Every row of the ISA table has semantics, in exactly one place, and
    the generator of each translated row emits code for its operand form."""
    for row in isa.TABLE:
        system = hasattr(Cpu, "_op_" + _opname(row))
        plain = row.mnemonic in SEMANTICS
        if row.kind in (isa.SYSTEM, isa.PRIV):
            if not system:
                raise AssertionError(f"no semantics for system row {row.mnemonic} {row.form}")
            continue
        if not plain:
            raise AssertionError(f"no semantics for {row.mnemonic} {row.form}")
        args = tuple(_SAMPLE_ARG.get(k, 1) for k in row.operands)
        g = Gen(row, args, 0, 8, ALL_FLAGS)
        SEMANTICS[row.mnemonic].gen(g)
        if row.kind == isa.BRANCH and not g.lines[-1].startswith("return"):
            raise AssertionError(f"branch {row.mnemonic} {row.form} returns no eip")


_check_semantics()
