"""System instructions: the rows of the ISA table the CPU executes itself
(``isa.SYSTEM`` and ``isa.PRIV``), one ``_op_<name>`` method each.

A mixin of ``Cpu``.  Each method gets the decoded instruction, its eip and
the next eip, and returns the eip to continue at; ending the batch (``hlt``,
I/O, a VM exit) raises ``StopRun``.
"""

from __future__ import annotations

from .. import isa
from . import strings
from .devices import CONSOLE_PORT
from .exceptions import GP, NP, UD, GuestFault
from .stops import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, KERNEL_CS, USER_CS, USER_SS
from .stops import StopRun as _StopRun
from .strings import REP_CHUNK  # (documented in docs/DECISIONS.md)


class SystemInstructions:
    """The CPU's system instructions."""

    # --- system instructions (one method per row; names from _opname) -------
    def _op_int(self, d, eip, nxt, vector=None):
        self.eip = eip
        self.delivery_faulted = False
        stop = self.deliver(d.args[0] if vector is None else vector, None, None, nxt,
                            soft=True)
        if stop is not None:
            raise _StopRun(stop.reason, 0, **stop.detail)
        if self.delivery_faulted:
            # The int did not complete: a fault took its place (not retired).
            raise _StopRun("budget", 0)
        return self.eip

    def _op_int3(self, d, eip, nxt):
        # NASM's one-byte breakpoint: int 3 (a software interrupt, checked
        # against the gate's DPL like any int n)
        return self._op_int(d, eip, nxt, 3)

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

    def _op_lgdt(self, d, eip, nxt):
        va = self.ea(d.args[0])
        limit = self.mmu.read(va, 2)
        base = self.mmu.read((va + 2) & 0xFFFFFFFF, 4)
        self.gdt_limit, self.gdt_base = limit, base
        return nxt

    def _op_ltr(self, d, eip, nxt):
        # SDM LTR: the selector names an available 32-bit TSS descriptor
        # (S=0, type 9) in the GDT; its base becomes the TSS base and the
        # descriptor is marked busy (type 0xB), so a second ltr of it faults.
        sel = self.r[d.args[0]] & 0xFFFF
        if sel & 0xFFFC == 0:
            raise GuestFault(GP, 0)
        if sel & 4 or (sel | 7) > self.gdt_limit:
            raise GuestFault(GP, sel & 0xFFFC)
        va = (self.gdt_base + (sel & 0xFFF8)) & 0xFFFFFFFF
        low = self.mmu.read(va, 4)
        high = self.mmu.read((va + 4) & 0xFFFFFFFF, 4)
        if (high >> 8) & 0x1F != 0x09:
            raise GuestFault(GP, sel & 0xFFFC)
        if not high & 0x8000:
            raise GuestFault(NP, sel & 0xFFFC)
        self.mmu.write((va + 4) & 0xFFFFFFFF, 4, high | 0x200)
        self.tss_base = (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)
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
        return self._io(eip, nxt, port, None, "al" if d.insn.operands[0] == "al" else reg)

    def _op_out(self, d, eip, nxt):
        port, reg = d.args
        if d.insn.operands[0] == "dx":
            port = self.r[2] & 0xFFFF
        value = self.r[reg] & 0xFF if d.insn.operands[1] == "al" else self.r[reg]
        return self._io(eip, nxt, port, value, None)

    def inline_out(self, value: int, eip: int, nxt: int, fetched: int, then: bool) -> None:
        """An out to the console inside a translated block (``translate``'s
        ``_gen_out``): what the dispatcher and ``_op_out`` would have done
        -- the out's fetch, if ``fetched`` (it is not the block's first
        instruction), its privilege check, the character written in place
        and, if ``then``, the next piece's fetch -- or the out's stop, as
        ``_io`` makes it (the block's counts are the dispatcher's)."""
        mmu = self.mmu
        if fetched and mmu.paging:
            mmu.itlb.lookups += 1
        if self.cpl != 0:
            raise GuestFault(GP, 0)
        direct = self.console_direct        # (``_io``'s first look, inline)
        if direct is None or not direct(value):
            self._io_stop(eip, nxt, CONSOLE_PORT, value, None)
        if then and mmu.paging:
            mmu.itlb.lookups += 1

    def port_in(self, reg, value: int) -> None:
        """The value an ``in`` read (the system layer performs the access):
        into a 32-bit register, or into al ("al")."""
        if reg == "al":
            self.r[0] = (self.r[0] & 0xFFFFFF00) | (value & 0xFF)
        else:
            self.r[reg] = value & 0xFFFFFFFF

    def _io(self, eip, nxt, port, value, reg):
        if port == CONSOLE_PORT and value is not None:
            direct = self.console_direct
            if direct is not None and direct(value):
                return nxt                  # written (and the exit answered) in place
        return self._io_stop(eip, nxt, port, value, reg)

    def _io_stop(self, eip, nxt, port, value, reg):
        """The stop (or VM exit) of an access ``_io`` did not make in place."""
        if "io" in self.intercepts:
            self.eip = eip
            if port == CONSOLE_PORT and value is not None and self.console_out is not None:
                # An exit the system answers in place (``Cpu.run``): the
                # record is made only if it cannot.
                raise _StopRun("io-exit", 0, port=port, value=value, eip=eip, next_eip=nxt)
            raise _StopRun("exit", 0, **self._exit(
                "io", eip, port=port, value=value, reg=reg, next_eip=nxt).detail)
        self.eip = nxt
        raise _StopRun("io", 1, port=port, value=value, reg=reg, eip=eip)

    def _op_ud2(self, d, eip, nxt):
        raise GuestFault(UD)

    def _string(self, d, eip, nxt, size: int, move: bool, rep: bool):
        """movs/stos, with ``rep``: interruptible, restartable at any count.

        As on x86, a long ``rep`` is interruptible between iterations: after
        ``REP_CHUNK`` of them the batch ends with eip still at the instruction
        and ecx/esi/edi advanced, so the timer, the cycle budget and the
        stepper get their turn; the instruction retires (counts once) when
        ecx reaches 0.  A fault on an iteration leaves the same restartable
        state.  ``strings.run`` moves the bytes a page at a time."""
        r = self.r
        count = r[1] if rep else 1
        chunk = min(count, REP_CHUNK)
        start = r[7]
        self.string_done = 0
        try:
            strings.run(self, chunk, size, move)
        finally:
            done = self.string_done
            if rep:
                r[1] = (count - done) & 0xFFFFFFFF
            self.cycles += done * (1 + (2 if move else 1) * self.costs.mem_ref)
            if rep and done:
                # It stored over its own bytes: where it is interrupted (a
                # timer, a VM exit) decides what runs next, as on hardware.
                lo = start - (done - 1) * size if self.df else start
                if lo < nxt and eip < lo + done * size:
                    self.rep_overwrote_itself = True
        if done < count:
            self.eip = eip                  # not retired: it goes on next batch
            raise _StopRun("budget", 0, rep=True)
        return nxt

    def _compare_string(self, d, eip, nxt, size: int, scan: bool, stop_zf: int):
        """repe/repne cmps/scas: ``_string``'s rules, and the repeat also
        ends after an iteration whose ZF is ``stop_zf`` (0: repe, 1: repne).
        With ecx = 0 nothing happens: no flag, no memory access.  Element by
        element through ``Mmu.read`` (``strings.compare``)."""
        r = self.r
        count = r[1]
        self.string_done = 0
        stopped = False
        try:
            stopped = strings.compare(self, min(count, REP_CHUNK), size, scan, stop_zf)
        finally:
            done = self.string_done
            r[1] = (count - done) & 0xFFFFFFFF
            self.cycles += done * (1 + (1 if scan else 2) * self.costs.mem_ref)
        if not stopped and done < count:
            self.eip = eip                  # not retired: it goes on next batch
            raise _StopRun("budget", 0, rep=True)
        return nxt

    def ea(self, m: isa.Mem) -> int:
        """The effective (linear) address of a memory operand."""
        a = m.disp
        if m.base is not None:
            a += self.r[m.base]
        if m.index is not None:
            a += self.r[m.index] * m.scale
        return a & 0xFFFFFFFF



def _opname(row: isa.Insn) -> str:
    return row.mnemonic.replace(" ", "_")      # "rep movsd": _op_rep_movsd


def _string_op(size: int, move: bool, rep: bool):
    def op(self, d, eip, nxt):
        return self._string(d, eip, nxt, size, move, rep)
    return op


for _mn, _size, _move in (("movsd", 4, True), ("stosd", 4, False),
                          ("movsb", 1, True), ("stosb", 1, False)):
    setattr(SystemInstructions, "_op_" + _mn, _string_op(_size, _move, False))
    setattr(SystemInstructions, "_op_rep_" + _mn, _string_op(_size, _move, True))


def _compare_op(size: int, scan: bool, stop_zf: int):
    def op(self, d, eip, nxt):
        return self._compare_string(d, eip, nxt, size, scan, stop_zf)
    return op


for _mn, _size, _scan in (("scasb", 1, True), ("scasd", 4, True),
                          ("cmpsb", 1, False), ("cmpsd", 4, False)):
    setattr(SystemInstructions, "_op_repe_" + _mn, _compare_op(_size, _scan, 0))
    setattr(SystemInstructions, "_op_repne_" + _mn, _compare_op(_size, _scan, 1))
