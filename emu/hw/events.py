"""Exceptions and interrupts: delivery through the IDT, double and triple
faults, events pending across a VM exit, injection by a VMM.

A mixin of ``Cpu``: it works on the CPU's registers, MMU and IDT state.
"""

from __future__ import annotations

from .exceptions import (
    DF,
    GP,
    HAS_ERROR_CODE,
    HPF,
    NP,
    NPF,
    PF,
    TIMER_VECTOR,
    GuestFault,
    describe_vector,
)
from .exits import (
    make_cr_read_exit,
    make_cr_write_exit,
    make_ept_violation_exit,
    make_halt_exit,
    make_host_page_exit,
    make_invlpg_exit,
    make_io_exit,
    make_page_fault_exit,
)
from .stops import CONTRIBUTORY, KERNEL_CS, USER_CS, USER_SS, Stop
from .stops import StopRun as _StopRun


class EventDelivery:
    """How the CPU delivers exceptions and interrupts.

    ``fault_chain`` records the events whose delivery failed since the last
    one that succeeded, first first: each a dict of vector, error_code,
    cr2, eip (of the instruction it belongs to) and ``why`` its delivery
    failed.  A triple fault hands it over in its stop (``chain``), so the
    report can name the first exception (``shutdown_report``).
    """

    fault_chain: tuple = ()
    _why: str | None = None
    _stage: str | None = None      # what the delivery was doing when a fault hit it

    # --- exceptions and interrupts ----------------------------------------
    def _exception(self, f: GuestFault, eip: int) -> Stop | None:
        """An exception raised by the instruction at ``eip``: a VM exit if
        intercepted (an EPT violation always is), else delivered through
        the IDT."""
        vector = f.vector
        if vector == PF and "pf" in self.intercepts:
            # (_exit's, inline: one on every hidden fault)
            va = f.cr2
            w = self.mmu.last_walk           # step 1: the shadow walk that faulted
            return Stop("exit", 0, 0, {"exit": make_page_fault_exit(
                eip, self.vectoring, va, f.error_code,
                w if w is not None and w.va == va else None)})
        if vector == NPF:
            return self._exit("npf", eip, va=f.cr2, gpa=f.gpa, error_code=f.error_code)
        if vector == HPF:
            return self._exit("host_page", eip, va=f.cr2, error_code=f.error_code)
        return self.deliver(vector, f.error_code, f.cr2, eip)

    def _exit(self, reason: str, eip: int, **detail) -> Stop:
        """A VM exit: the typed record of ``reason`` (``exits.py``), as a Stop."""
        v = self.vectoring
        if reason == "pf":
            w = self.mmu.last_walk           # step 1: the shadow walk that faulted
            exit = make_page_fault_exit(eip, v, detail["va"], detail["error_code"],
                                        w if w is not None and w.va == detail["va"] else None)
        elif reason == "npf":
            exit = make_ept_violation_exit(eip, v, detail["va"], detail["gpa"],
                                           detail["error_code"],
                                           getattr(self.mmu.walker, "last_grid", ()))
        elif reason == "host_page":
            exit = make_host_page_exit(eip, v, detail["va"], detail["error_code"])
        elif reason == "hlt":
            exit = make_halt_exit(eip, v, detail["next_eip"])
        elif reason == "invlpg":
            exit = make_invlpg_exit(eip, v, detail["va"], detail["next_eip"])
        elif reason == "cr3_read":
            exit = make_cr_read_exit(eip, v, detail["reg"], detail["next_eip"])
        elif reason == "io":
            exit = make_io_exit(eip, v, detail["port"], detail["value"], detail["reg"],
                                detail["next_eip"])
        else:                                  # cr0_write, cr3_write, cr4_write
            exit = make_cr_write_exit(eip, v, detail["cr"], detail["value"],
                                      detail["next_eip"])
        return Stop("exit", detail={"exit": exit})

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
        gate = f"IDT gate {vector if vector < 32 else hex(vector)}"
        # The error code of a fault on the gate: its IDT index (bit 1: IDT),
        # with EXT (bit 0) unless the event is the program's own int n
        # (Intel SDM vol. 3A, 6.13).
        gate_ec = vector * 8 + 2 + (0 if soft else 1)
        self._why = None                   # why the delivery failed, if it does
        stage = "reading its IDT gate"
        try:
            self.mmu.set_user(False)       # implicit supervisor accesses
            if vector * 8 + 7 > self.idt_limit:
                self._why = ("with no IDT loaded" if self.idt_limit == self.idt_base == 0
                             else f"with vector {vector} beyond the IDT limit "
                                  f"{self.idt_limit:#x}")
                raise GuestFault(GP, gate_ec)
            handler = self.mmu.read(self.idt_base + vector * 8, 4)
            attr = self.mmu.read(self.idt_base + vector * 8 + 4, 4)
            # The SDM's order: gate type, then (int n only) DPL, then present.
            gate_type = (attr >> 8) & 0xF
            if gate_type not in (0xE, 0xF):
                self._why = f"with {gate} not an interrupt or trap gate (type {gate_type:#x})"
                raise GuestFault(GP, gate_ec)
            if soft and cpl > (attr >> 13) & 3:
                self._why = f"with {gate} closed to ring 3 (DPL {(attr >> 13) & 3})"
                raise GuestFault(GP, gate_ec)
            if not attr & 0x8000:
                self._why = f"with {gate} not present"
                raise GuestFault(NP, gate_ec)
            r = self.r
            stage = "pushing its frame"
            if cpl == 3:
                stage = "reading esp0 from the TSS"
                esp = self.mmu.read((self.tss_base + 4) & 0xFFFFFFFF, 4)
                stage = "pushing its frame"
                frame = [USER_SS, r[4], self.eflags, USER_CS, return_eip]
            else:
                esp = r[4]
                frame = [self.eflags, KERNEL_CS, return_eip]
            if error_code is not None:
                frame.append(error_code)
            new_esp = (esp - 4 * len(frame)) & 0xFFFFFFFF
            # Translate every page of the frame before writing any of it.
            top = (esp - 1) & 0xFFFFFFFF
            self.mmu.check_write(new_esp)
            if top >> 12 != new_esp >> 12:
                self.mmu.check_write(top)
            for i, value in enumerate(reversed(frame)):
                self.mmu.write((new_esp + 4 * i) & 0xFFFFFFFF, 4, value)
        except GuestFault as f:
            self.mmu.set_user(user_before)
            self._stage = None
            if self._why is None:
                self._stage = stage
                self._why = f"while {stage}: {f}"
            return self._delivery_fault(f)
        self.vectoring = None
        self.fault_chain = ()
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
        if f.vector == HPF:
            return self._exit("host_page", eip, va=f.cr2, error_code=f.error_code)
        if f.vector == PF and "pf" in self.intercepts:
            # The VMM sees the #PF; ``vectoring`` keeps the first event, which
            # is delivered again when the guest resumes.
            return self._exit("pf", eip, va=f.cr2, error_code=f.error_code)
        self._failed(self.vectoring, eip)
        self.vectoring = None
        return self.combine(first, f, eip, external or soft)

    def _failed(self, event: tuple, eip: int) -> None:
        """Add the event whose delivery just failed to ``fault_chain``."""
        vector, error_code, cr2, _, soft, external = event
        self.fault_chain = (*self.fault_chain, {
            "vector": vector, "error_code": error_code, "cr2": cr2, "eip": eip,
            "soft": soft, "external": external, "why": self._why or "",
        })

    def combine(self, first: int, f: GuestFault, eip: int, benign: bool) -> Stop | None:
        """x86's double-fault rules for a fault ``f`` while delivering ``first``.
        A #PF sets CR2 when it is detected, even one that becomes a double
        fault (Intel SDM vol. 3A, 6.15, interrupt 14)."""
        if f.vector == PF:
            self.cr2 = f.cr2
        if first == DF:
            chain, self.fault_chain = self.fault_chain, ()
            return Stop("shutdown", detail={
                "message": f"triple fault: {f} while delivering a double fault",
                "eip": eip, "chain": list(chain)})
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
            if self._stage is not None:    # the fault the guest sees, not the VMM's
                self._why = f"while {self._stage}: {GuestFault(vector, error_code, cr2)}"
            self._failed(pending, self.eip)
            first, _, _, _, soft, external = pending
            # The fault belongs to the instruction at eip (the exit's).
            return self.combine(first, GuestFault(vector, error_code, cr2), self.eip,
                                external or soft)
        return self.deliver(vector, error_code, cr2, self.eip)

    def raise_irq(self) -> None:
        """The timer's interrupt line (vector 32), delivered when IF=1."""
        self.irq_pending = True


def event_name(rec: dict) -> str:
    """``#PF page fault (va 0x..., error code 0x6)``, ``timer interrupt`` ..."""
    vector, ec = rec["vector"], rec["error_code"]
    if rec["external"] and vector == TIMER_VECTOR:
        return "timer interrupt"
    if rec["soft"]:
        return f"int {vector:#x}"
    name = describe_vector(vector)
    if vector == PF and rec["cr2"] is not None:
        return f"{name} (va {rec['cr2']:#010x}, error code {ec or 0:#x})"
    if vector in HAS_ERROR_CODE and vector != DF and ec is not None:
        return f"{name} (error code {ec:#x})"
    return name


def shutdown_report(chain: list[dict], where=lambda eip: "") -> str:
    """A triple fault told from its first event: what it was, at which eip
    (``where(eip)`` adds its source line), why its delivery failed, and each
    event that followed, e.g. ``#DE divide error at eip 0x00001010 (demo.s:14:
    `div ecx`) with no IDT loaded -> double fault -> triple fault: the
    machine shut down``.  A reason is given again only when it changes."""
    parts = []
    before = None
    for i, rec in enumerate(chain):
        if i == 0:
            text = f"{event_name(rec)} at eip {rec['eip']:#010x}{where(rec['eip'])}"
        else:
            text = "double fault" if rec["vector"] == DF else event_name(rec)
        if rec["why"] and rec["why"] != before:
            text += " " + rec["why"]
        before = rec["why"]
        parts.append(text)
    return " -> ".join([*parts, "triple fault: the machine shut down"])
