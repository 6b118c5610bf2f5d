"""The CPU: architectural state, the dispatcher, exceptions, system instructions.

``Cpu.run(max_insns, max_cycles)`` executes translated blocks until a budget
is spent or something needs the world outside the CPU, and returns a
``Stop`` saying which: the budget, ``hlt``, an I/O instruction (the system
layer talks to devices at exact instruction boundaries), a VM exit (an
intercepted event, see ``intercepts``), a triple fault or a bus error.

Ring switches: CPL 3 -> 0 on an interrupt or exception loads esp from the
TSS's esp0 field (the dword at ``tss_base + 4``; ``ltr r32`` sets
``tss_base``, a linear address) and pushes ss, esp, eflags, cs, eip and the
error code, as x86 does; ``iret`` pops them.  Selectors are fixed: kernel
cs 0x08, user cs 0x1B, user ss 0x23 (their low two bits are the CPL).

IDT entries are 8 bytes: ``dd handler, attr`` where attr bit 15 is P,
bits 14-13 the DPL and bits 11-8 the type (0xE interrupt gate, clears IF;
0xF trap gate).  ``lidt`` loads 6 bytes: a 16-bit limit and a 32-bit base.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import isa
from .exceptions import DE, DF, GP, NP, NPF, PF, TIMER_VECTOR, UD, GuestFault
from .memory import BusError
from .mmu import Mmu
from .semantics import SEMANTICS
from .translate import SINGLE, Block, decode_block, translate

KERNEL_CS, USER_CS, USER_SS = 0x08, 0x1B, 0x23
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 16, 1 << 31
CR4_PSE, CR4_PGE = 1 << 4, 1 << 7
CONTRIBUTORY = frozenset({DE, 10, NP, 12, GP})

# Every intercept a VMM may ask for (VMX-style exit controls).
INTERCEPTS = frozenset({"pf", "cr3_read", "cr3_write", "cr0_write", "cr4_write",
                        "invlpg", "hlt", "io"})


@dataclass
class Stop:
    """Why ``Cpu.run`` returned, and what it did before."""

    reason: str           # budget | halt | io | exit | shutdown | crash
    insns: int = 0        # instructions retired in this batch
    cycles: int = 0       # cycles they took (walks and deliveries included)
    detail: dict = field(default_factory=dict)


class _StopRun(Exception):
    def __init__(self, reason: str, retired: int, **detail):
        self.reason = reason
        self.retired = retired
        self.detail = detail


class Cpu:
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
        self.iflag = 0
        self.cpl = 0
        # Guest-visible control registers (under a VMM the hardware's own
        # paging state lives in the MMU and may differ).
        self.cr0 = self.cr2 = self.cr3 = self.cr4 = 0
        self.idt_base = 0
        self.idt_limit = 0
        self.tss_base = 0
        self.irq_pending = False
        self.intercepts: frozenset = frozenset()
        self.nested = False           # nested paging: the MMU walks in two dimensions
        self.vectoring: tuple | None = None   # event being delivered when an exit hit
        self._delivering_eip = 0
        self.delivery_faulted = False
        self.partial: int | None = None
        self.iters = 0                # iterations run by the last loop block
        self.icount = 0
        self.cycles = 0
        self.exceptions: dict[int, int] = {}
        self.interrupts = 0
        self.blocks_translated = 0
        # Loop blocks run their back edge without a fetch lookup: exact only
        # when the loop's data accesses cannot evict the code's entry, i.e.
        # with a split ITLB/DTLB (repeated lookups of one page change no order).
        self.loop_blocks = mmu.itlb is not mmu.dtlb
        self.on_event = None      # callable(kind, **data) for the trace, or None
        self._system = {}
        for row in isa.TABLE:
            if row.kind in (isa.SYSTEM, isa.PRIV):
                self._system[row.opcode] = getattr(self, "_op_" + _opname(row))

    # --- flags -----------------------------------------------------------
    @property
    def eflags(self) -> int:
        return (isa.EFLAGS_FIXED | (self.cf and isa.CF) | (self.zf and isa.ZF)
                | (self.sf and isa.SF) | (self.iflag and isa.IF) | (self.of and isa.OF))

    def set_eflags(self, value: int, allow_if: bool = True) -> None:
        self.cf = int(bool(value & isa.CF))
        self.zf = int(bool(value & isa.ZF))
        self.sf = int(bool(value & isa.SF))
        self.of = int(bool(value & isa.OF))
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
        itouch = mmu.itlb.touch if mmu.itlb.policy == "lru" else None
        icount = cycles = drefs = ilookups = 0
        cycles0 = self.cycles
        # Paging changes only with a mov to CR0, which ends the batch: every
        # lookup of this batch was made in the paging state it starts in.
        paging = mmu.paging
        b = None
        stop = None
        eip = self.eip
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
                        elif itouch is not None and mmu.paging:
                            itouch(eip >> 12)
                        b = blocks.get(eip)
                        if b is None:
                            b = self._translate(eip, False)
                        fn, n, c, d, loop, _ = b
                        if n > max_insns - icount:
                            b = blocks.get(eip | SINGLE) or self._translate(eip, True)
                            fn, n, c, d, loop, _ = b
                        if loop:
                            eip = fn(max_insns - icount, max_cycles - cycles)
                            it = self.iters
                            icount += n * it
                            cycles += c * it
                            drefs += d * it
                            ilookups += it - 1     # one fetch per iteration
                        else:
                            eip = fn()
                            icount += n
                            cycles += c
                            drefs += d
                    self.eip = eip
                    stop = Stop("budget")
                except GuestFault as f:
                    if b is not None:
                        k = self.partial
                        if k is not None:
                            meta = b.meta
                            it = self.iters if b.loop else 0
                            icount += k + it * b.ninsns
                            cycles += meta.cycles_before[k] + it * b.cycles
                            drefs += meta.drefs_before[k] + it * b.drefs
                            ilookups += it
                            eip = meta.eips[k]
                    self.partial = None
                    b = None
                    self.eip = eip
                    stop = self._exception(f, eip)
                except _StopRun as s:
                    icount += s.retired
                    if b is not None:
                        cycles += b.cycles
                    stop = Stop(s.reason, detail=s.detail)
        except BusError as e:
            if b is not None and self.partial is not None:
                eip = b.meta.eips[self.partial]
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

    def _translate(self, eip: int, single: bool) -> Block:
        """Translate the block at ``eip`` (one instruction if ``single``)."""
        mmu = self.mmu
        page, pn = mmu.translate(eip, False, True, False)
        vpn = eip >> 12

        def fetch(va):
            va &= 0xFFFFFFFF
            if va >> 12 == vpn:
                return page[va & 0xFFF]
            return mmu.fetch_byte(va)

        decoded = decode_block(fetch, eip, single)
        blocks = mmu.code.setdefault(pn, {})
        key = eip | SINGLE if single else eip
        cached = blocks.get(key)
        if cached is not None:
            return cached
        if decoded:
            block = translate(self, decoded, eip, self.costs, self.loop_blocks)
        else:
            block = self._lone(fetch, eip)
            if block is None:
                return self._lone_uncached(eip)
        self.blocks_translated += 1
        if not blocks:
            mmu.code_page_used(pn)
        blocks[key] = block
        return block

    def _lone(self, fetch, eip: int) -> Block | None:
        """A system instruction or an undecodable one, as a block; None for
        an instruction that crosses a page (never cached)."""
        try:
            d = isa.decode(fetch, eip)
        except isa.DecodeError:
            def undefined():
                raise GuestFault(UD)
            return Block(undefined, 1, 1, 0, False, None)
        if (eip + d.length - 1) >> 12 != eip >> 12:
            return None
        return self._system_block(d, eip)

    def _lone_uncached(self, eip: int) -> Block:
        d = isa.decode(self.mmu.fetch_byte, eip)   # crossing: both pages, lowest first
        if self.mmu.paging:
            self.mmu.itlb.lookups += 1
        if d.insn.kind in (isa.SYSTEM, isa.PRIV):
            return self._system_block(d, eip)
        return translate(self, [d], eip, self.costs, self.loop_blocks)

    def _system_block(self, d: isa.Decoded, eip: int) -> Block:
        op = self._system[d.insn.opcode]
        priv = d.insn.kind == isa.PRIV
        next_eip = eip + d.length

        def system():
            if priv and self.cpl != 0:
                raise GuestFault(GP, 0)
            return op(d, eip, next_eip)
        return Block(system, 1, d.insn.cycles, 0, False, None)

    # --- exceptions and interrupts ----------------------------------------
    def _exception(self, f: GuestFault, eip: int) -> Stop | None:
        """An exception raised by the instruction at ``eip``: a VM exit if
        intercepted (an EPT violation always is), else delivered through
        the IDT."""
        if f.vector == NPF:
            return self._exit("npf", eip, va=f.cr2, gpa=f.gpa, error_code=f.error_code)
        if f.vector == PF and "pf" in self.intercepts:
            return self._exit("pf", eip, va=f.cr2, error_code=f.error_code)
        return self.deliver(f.vector, f.error_code, f.cr2, eip)

    def _exit(self, reason: str, eip: int, **detail) -> Stop:
        detail.update(eip=eip, vectoring=self.vectoring)
        return Stop("exit", detail={"exit": reason, **detail})

    def _interrupt(self) -> None:
        self.irq_pending = False
        self.interrupts += 1
        stop = self.deliver(TIMER_VECTOR, None, None, self.eip, external=True)
        if stop is not None:
            raise _StopRun(stop.reason, 0, **stop.detail)

    def _redeliver(self) -> int:
        """Deliver again the event a VM exit interrupted; returns the
        instructions it retires (an ``int n`` retires when its delivery
        completes, as it would have without the exit)."""
        vector, ec, cr2, ret, soft, external = self.vectoring
        self.vectoring = None
        self.delivery_faulted = False
        stop = self.deliver(vector, ec, cr2, ret, soft=soft, external=external)
        if stop is not None:
            raise _StopRun(stop.reason, 0, **stop.detail)
        return 1 if soft and not self.delivery_faulted else 0

    def deliver(self, vector: int, error_code, cr2, return_eip: int, *,
                soft: bool = False, external: bool = False) -> Stop | None:
        """Deliver an event through the IDT: push the frame, enter the handler.

        A fault while delivering makes a double fault (or is delivered
        serially after a benign event); a fault while delivering a double
        fault shuts the machine down (triple fault).  Under a VMM, a #PF
        the VMM intercepts during delivery exits with the event kept in
        ``vectoring``: it is delivered again when the guest resumes.
        """
        if vector == PF:
            self.cr2 = cr2
        # The instruction a fault during this delivery belongs to: the one at
        # eip (the int itself for int n, the faulting one for a fault).
        self._delivering_eip = self.eip
        self.vectoring = (vector, error_code, cr2, return_eip, soft, external)
        cpl = self.cpl
        user_before = self.mmu.user
        try:
            self.mmu.set_user(False)       # implicit supervisor accesses
            if vector * 8 + 7 > self.idt_limit:
                raise GuestFault(GP, vector * 8 + 2)
            handler = self.mmu.read(self.idt_base + vector * 8, 4)
            attr = self.mmu.read(self.idt_base + vector * 8 + 4, 4)
            # The SDM's order: gate type, then (int n only) DPL, then present.
            gate_type = (attr >> 8) & 0xF
            if gate_type not in (0xE, 0xF):
                raise GuestFault(GP, vector * 8 + 2)
            if soft and cpl > (attr >> 13) & 3:
                raise GuestFault(GP, vector * 8 + 2)
            if not attr & 0x8000:
                raise GuestFault(NP, vector * 8 + 2)
            r = self.r
            if cpl == 3:
                esp = self.mmu.read((self.tss_base + 4) & 0xFFFFFFFF, 4)
                frame = [USER_SS, r[4], self.eflags, USER_CS, return_eip]
            else:
                esp = r[4]
                frame = [self.eflags, KERNEL_CS, return_eip]
            if error_code is not None:
                frame.append(error_code)
            new_esp = (esp - 4 * len(frame)) & 0xFFFFFFFF
            # Translate every page of the frame before writing any of it.
            top = (esp - 1) & 0xFFFFFFFF
            self.mmu.translate(new_esp, True)
            if top >> 12 != new_esp >> 12:
                self.mmu.translate(top, True)
            for i, value in enumerate(reversed(frame)):
                self.mmu.write((new_esp + 4 * i) & 0xFFFFFFFF, 4, value)
        except GuestFault as f:
            self.mmu.set_user(user_before)
            return self._delivery_fault(f)
        self.vectoring = None
        r[4] = new_esp
        self.set_cpl(0)
        if gate_type == 0xE:
            self.iflag = 0
        self.eip = handler
        self.cycles += self.costs.interrupt
        if not external:
            self.exceptions[vector] = self.exceptions.get(vector, 0) + 1
        if self.on_event is not None:
            self.on_event("deliver", vector=vector, error_code=error_code,
                          cr2=cr2, eip=return_eip, handler=handler,
                          source="interrupt" if external else "int" if soft else "fault")
        return None

    def _delivery_fault(self, f: GuestFault) -> Stop | None:
        first, _, _, _, soft, external = self.vectoring
        eip = self._delivering_eip
        self.eip = eip
        self.delivery_faulted = True
        if f.vector == NPF:
            return self._exit("npf", eip, va=f.cr2, gpa=f.gpa, error_code=f.error_code)
        if f.vector == PF and "pf" in self.intercepts:
            # The VMM sees the #PF; ``vectoring`` keeps the first event, which
            # is delivered again when the guest resumes.
            return self._exit("pf", eip, va=f.cr2, error_code=f.error_code)
        self.vectoring = None
        return self.combine(first, f, eip, external or soft)

    def combine(self, first: int, f: GuestFault, eip: int, benign: bool) -> Stop | None:
        """x86's double-fault rules for a fault ``f`` while delivering ``first``."""
        if first == DF:
            return Stop("shutdown", detail={
                "message": f"triple fault: {f} while delivering a double fault",
                "eip": eip})
        first_class = "benign" if benign or first not in CONTRIBUTORY | {PF} else (
            "pf" if first == PF else "contributory")
        second_bad = f.vector in CONTRIBUTORY or f.vector == PF
        if first_class != "benign" and second_bad and not (
                first_class == "contributory" and f.vector == PF):
            return self.deliver(DF, 0, None, eip)
        return self.deliver(f.vector, f.error_code, f.cr2, eip)

    def inject(self, vector: int, error_code=None, cr2=None) -> Stop | None:
        """Deliver an event chosen by the VMM (VM entry with injection)."""
        pending = self.vectoring
        if pending is not None:
            self.vectoring = None
            first, _, _, _, soft, external = pending
            # The fault belongs to the instruction at eip (the exit's).
            return self.combine(first, GuestFault(vector, error_code, cr2), self.eip,
                                external or soft)
        return self.deliver(vector, error_code, cr2, self.eip)

    def raise_irq(self) -> None:
        """The timer's interrupt line (vector 32), delivered when IF=1."""
        self.irq_pending = True

    # --- system instructions (one method per row; names from _opname) -------
    def _op_int(self, d, eip, nxt):
        self.eip = eip
        self.delivery_faulted = False
        stop = self.deliver(d.args[0], None, None, nxt, soft=True)
        if stop is not None:
            raise _StopRun(stop.reason, 0, **stop.detail)
        if self.delivery_faulted:
            # The int did not complete: a fault took its place (not retired).
            raise _StopRun("budget", 0)
        return self.eip

    def _op_iret(self, d, eip, nxt):
        mmu, r = self.mmu, self.r
        sp = r[4]
        new_eip = mmu.read(sp, 4)
        cs = mmu.read((sp + 4) & 0xFFFFFFFF, 4)
        flags = mmu.read((sp + 8) & 0xFFFFFFFF, 4)
        rpl = cs & 3
        if cs not in (KERNEL_CS, USER_CS) or rpl < self.cpl:
            raise GuestFault(GP, cs & 0xFFFC)
        if rpl == 3 and self.cpl == 0:
            new_esp = mmu.read((sp + 12) & 0xFFFFFFFF, 4)
            ss = mmu.read((sp + 16) & 0xFFFFFFFF, 4)
            if ss != USER_SS:
                raise GuestFault(GP, ss & 0xFFFC)
        else:
            new_esp = (sp + 12) & 0xFFFFFFFF
        self.set_eflags(flags, allow_if=self.cpl == 0)
        r[4] = new_esp
        self.set_cpl(rpl)
        return self._after_if_change(new_eip)

    def _after_if_change(self, nxt: int) -> int:
        """IF may have become 1: a pending interrupt is taken before the
        next instruction."""
        if self.irq_pending and self.iflag:
            self.eip = nxt
            try:
                self._interrupt()
            except _StopRun as s:
                s.retired += 1        # this instruction completed before the exit
                raise
            return self.eip
        return nxt

    def _op_hlt(self, d, eip, nxt):
        if "hlt" in self.intercepts:
            self.eip = eip
            raise _StopRun("exit", 0, **self._exit("hlt", eip, next_eip=nxt).detail)
        self.eip = nxt
        raise _StopRun("halt", 1)

    def _op_cli(self, d, eip, nxt):
        self.iflag = 0
        return nxt

    def _op_sti(self, d, eip, nxt):
        self.iflag = 1
        return self._after_if_change(nxt)

    def _op_popfd(self, d, eip, nxt):
        value = self.mmu.read(self.r[4], 4)
        self.r[4] = (self.r[4] + 4) & 0xFFFFFFFF
        self.set_eflags(value, allow_if=self.cpl == 0)
        return self._after_if_change(nxt)

    def _op_lidt(self, d, eip, nxt):
        va = self.ea(d.args[0])
        limit = self.mmu.read(va, 2)
        base = self.mmu.read((va + 2) & 0xFFFFFFFF, 4)
        self.idt_limit, self.idt_base = limit, base
        return nxt

    def _op_ltr(self, d, eip, nxt):
        self.tss_base = self.r[d.args[0]]
        return nxt

    def _op_invlpg(self, d, eip, nxt):
        va = self.ea(d.args[0])
        if "invlpg" in self.intercepts:
            self.eip = eip
            raise _StopRun("exit", 0, **self._exit("invlpg", eip, va=va, next_eip=nxt).detail)
        self.mmu.invlpg(va)
        return nxt

    def _op_mov(self, d, eip, nxt):
        if d.insn.operands == ("r", "c"):
            reg, cr = d.args
            if cr == 3 and "cr3_read" in self.intercepts:
                self.eip = eip
                raise _StopRun("exit", 0, **self._exit(
                    "cr3_read", eip, reg=reg, next_eip=nxt).detail)
            self.r[reg] = {0: self.cr0, 2: self.cr2, 3: self.cr3, 4: self.cr4}[cr]
            return nxt
        cr, reg = d.args
        value = self.r[reg]
        name = {0: "cr0_write", 3: "cr3_write", 4: "cr4_write"}.get(cr)
        if name in self.intercepts:
            self.eip = eip
            raise _StopRun("exit", 0, **self._exit(
                name, eip, cr=cr, value=value, next_eip=nxt).detail)
        self.write_cr(cr, value)
        if cr == 0:
            # Paging may have changed: end the batch so the counts of the
            # TLB lookups made with paging off are not charged to the TLB.
            self.eip = nxt
            raise _StopRun("budget", 1)
        return nxt

    def write_cr(self, cr: int, value: int) -> None:
        """MOV to CRn natively: the hardware's paging state follows."""
        mmu = self.mmu
        if cr == 2:
            self.cr2 = value          # no effect on translation
            return
        if cr == 0:
            old = self.cr0
            self.cr0 = value
            if (old ^ value) & (CR0_PG | CR0_WP):
                mmu.flush_all()
        elif cr == 3:
            self.cr3 = value
            mmu.load_cr3(value)
        elif cr == 4:
            old = self.cr4
            self.cr4 = value
            if (old ^ value) & (CR4_PSE | CR4_PGE):
                mmu.flush_all()
        # Under nested paging the hardware always translates (va -> ma):
        # the 2D walker itself follows the guest's CR0.PG.
        mmu.set_control(self.nested or bool(self.cr0 & CR0_PG), bool(self.cr0 & CR0_WP),
                        bool(self.cr4 & CR4_PSE), bool(self.cr4 & CR4_PGE))
        if cr == 3 or (cr == 0 and self.cr0 & CR0_PG):
            mmu.cr3 = self.cr3 & 0xFFFFF000

    def _op_in(self, d, eip, nxt):
        reg, port = d.args
        if d.insn.operands[1] == "dx":
            port = self.r[2] & 0xFFFF
        return self._io(eip, nxt, port, None, reg)

    def _op_out(self, d, eip, nxt):
        port, reg = d.args
        if d.insn.operands[0] == "dx":
            port = self.r[2] & 0xFFFF
        return self._io(eip, nxt, port, self.r[reg], None)

    def _io(self, eip, nxt, port, value, reg):
        if "io" in self.intercepts:
            self.eip = eip
            raise _StopRun("exit", 0, **self._exit(
                "io", eip, port=port, value=value, reg=reg, next_eip=nxt).detail)
        self.eip = nxt
        raise _StopRun("io", 1, port=port, value=value, reg=reg, eip=eip)

    def _op_ud2(self, d, eip, nxt):
        raise GuestFault(UD)

    def _string(self, d, eip, nxt, size: int, move: bool, rep: bool):
        """movs/stos, with ``rep``: interruptible, restartable at any count."""
        mmu, r = self.mmu, self.r
        count = r[1] if rep else 1
        done = 0
        try:
            while done < count:
                if move:
                    value = mmu.read(r[6], size)
                else:
                    value = r[0] & (0xFF if size == 1 else 0xFFFFFFFF)
                mmu.write(r[7], size, value)
                if move:
                    r[6] = (r[6] + size) & 0xFFFFFFFF
                r[7] = (r[7] + size) & 0xFFFFFFFF
                done += 1
                if rep:
                    r[1] = (r[1] - 1) & 0xFFFFFFFF
        finally:
            self.cycles += done * (1 + (2 if move else 1) * self.costs.mem_ref)
        return nxt

    def ea(self, m: isa.Mem) -> int:
        """The effective (linear) address of a memory operand."""
        a = m.disp
        if m.base is not None:
            a += self.r[m.base]
        if m.index is not None:
            a += self.r[m.index] * m.scale
        return a & 0xFFFFFFFF

    # --- statistics -------------------------------------------------------
    def stats(self) -> dict:
        return {"instructions": self.icount, "cycles": self.cycles,
                "exceptions": {str(k): v for k, v in sorted(self.exceptions.items())},
                "interrupts": self.interrupts,
                "blocks_translated": self.blocks_translated}


def _opname(row: isa.Insn) -> str:
    name = row.mnemonic.replace("rep ", "rep_")
    return name


def _string_op(size: int, move: bool, rep: bool):
    def op(self, d, eip, nxt):
        return self._string(d, eip, nxt, size, move, rep)
    return op


for _mn, _size, _move in (("movsd", 4, True), ("stosd", 4, False),
                          ("movsb", 1, True), ("stosb", 1, False)):
    setattr(Cpu, "_op_" + _mn, _string_op(_size, _move, False))
    setattr(Cpu, "_op_rep_" + _mn, _string_op(_size, _move, True))


def _check_semantics() -> None:
    """Every row of the ISA table has semantics, in exactly one place."""
    for row in isa.TABLE:
        system = hasattr(Cpu, "_op_" + _opname(row))
        plain = row.mnemonic in SEMANTICS
        if row.kind in (isa.SYSTEM, isa.PRIV):
            if not system:
                raise AssertionError(f"no semantics for system row {row.mnemonic} {row.form}")
        elif not plain:
            raise AssertionError(f"no semantics for {row.mnemonic} {row.form}")


_check_semantics()
