"""The vCPU and timer processes of a ``System`` (a mixin it inherits).

``VcpuMixin`` holds the simpy processes of a run and what they call: the
vCPU's batch loop (``_vcpu``) with its budgets and the console shortcut,
the reactions to the stops a batch ends with (port I/O, ``hlt``, a VM exit
the VMM does not resume at once, a triple fault, a crash), the timer's tick
and, under the cycle clock, the timer's own process.  ``system.py`` holds
the machine's set-up and the running of it.
"""

from __future__ import annotations

import os

from simpy.core import Infinity as INFINITY

from .hw.cpu import Stop
from .hw.devices import PowerOff
from .hw.events import shutdown_report
from .vmm.api import Action
from .vmm.runtime import RESUMES

BATCH_CYCLES = 1_000_000      # longest batch: keeps progress reports flowing


class VcpuMixin:
    """The processes of a ``System`` (see ``system.py`` for its state)."""

    # Console output while nobody watches goes on in the CPU's batch
    # (``_console_split``); False: every character ends the batch (the
    # same figures, more slowly -- tests/test_console_in_place.py).
    CONSOLE_IN_PLACE = True
    # A rep's chunk (``REP_CHUNK``) while nobody watches and nothing else is
    # due goes on in the CPU's batch (``Cpu.rep_in_place``); False: every
    # chunk ends the batch (the same figures, more slowly).
    REP_IN_PLACE = True

    # --- the processes -----------------------------------------------------
    def clock_now(self) -> int:
        return self.cpu.icount if self.config.clock == "instructions" else int(self.env.now)

    def _vcpu(self):
        cpu, timer, env, bus = self.cpu, self.timer, self.env, self.bus
        by_insns = self.config.clock == "instructions"
        max_cycles = self.config.max_cycles
        vmm = self.vmm
        release = self.host.release if vmm is not None else None
        name = self.name
        hooks = vars(cpu)               # a driver's hook on the batch lives here
        direct = self._console_direct if vmm is None else self._console_exit_direct
        # See _console_split (under a VMM whose every exit is checked, the
        # exit goes the whole way).
        split = None if not self.CONSOLE_IN_PLACE or (
            vmm is not None and vmm.check is not None) else (
            self._console_split if vmm is None else self._console_exit_split)
        while True:
            if self.max_batch_insns == 0:
                yield from self._take_owed()
                self.held = True            # see max_batch_insns
                yield env.timeout(0)
                continue
            self.held = False
            env_now = env.now
            now = int(env_now) + self._owed
            left = max_cycles - now
            if left <= 0:
                yield from self._take_owed()
                self._end("budget", f"cycle budget of {max_cycles:,} cycles exhausted "
                          "(a runaway guest? raise it with --max-cycles)")
                return
            max_i, max_c = self._budgets(left, now)
            if max_i == 0 or max_c == 0:
                # A deadline is due: let the timer act first.
                if by_insns:
                    self._tick()
                else:
                    yield from self._take_owed()
                    yield env.timeout(0)
                continue
            # Unwatched, the batch after a character for the console starts
            # in place (``_console_split``).
            unwatched = not (bus.active or self.progress is not None
                             or self.max_batch_insns is not None or "run" in hooks)
            out = cpu.console_out = split if unwatched else None
            # (nothing at all due: the character needs not even a split, and
            # a rep's chunk does not end the batch)
            self._direct_outs = 0
            self._direct_slack, self._direct_c0 = left - max_c, cpu.cycles
            alone = unwatched and env.peek() == INFINITY
            cpu.console_direct = direct if out is not None and alone else None
            cpu.rep_in_place = self._direct_room if alone and self.REP_IN_PLACE else None
            stop = cpu.run(max_i, max_c)
            # (for this batch only: an exit's handler may run the CPU too --
            # an emulated instruction -- and nothing may go on in place there)
            cpu.console_direct = cpu.rep_in_place = None
            if stop.insns > self._direct_outs and release is not None:
                release(name)           # progress: its exits' pages may go
            reason = self.last_stop = stop.reason
            # The batch's time is owed, and taken now only if something
            # else could happen first or somebody looks (vmm/runtime.py).
            owed = self._owed + stop.cycles
            if (owed >= env.peek() - env_now or bus.active or self.progress is not None
                    or self.max_batch_insns is not None or "run" in hooks
                    or not (by_insns or reason == "exit" or reason == "budget")):
                self._owed = 0
                yield env.timeout(owed)
            else:
                self._owed = owed
            if by_insns and timer.due(cpu.icount):
                self._tick()
            if self.progress is not None:
                self.progress(self)
            if reason == "budget":
                continue
            if reason == "exit" and vmm is not None:
                vmm._owed += self._owed
                self._owed = 0
                outcome = vmm.enter(stop.detail["exit"])
                if outcome is None:
                    outcome = yield from vmm.serve()
                self._owed = vmm.take_owed()
                if outcome.action in RESUMES:
                    continue
                if not by_insns:
                    yield from self._take_owed()     # the clock is read from here on
                done = yield from self._act(outcome)
            elif reason == "io":
                d = stop.detail
                done = self._io(d["port"], d["value"], d["reg"])
            else:
                done = yield from self._handle(stop)
            if done:
                yield from self._take_owed()
                return

    def _budgets(self, left: int, now: int) -> tuple[int, int]:
        """The next batch's (max instructions, max cycles), with ``left``
        cycles of budget at cycle ``now``; 0 in either: a deadline is due."""
        max_c = min(left, BATCH_CYCLES)
        max_i = self.max_batch_insns or 1 << 62
        deadline = self.timer.deadline
        if deadline is not None:
            if self.config.clock == "instructions":
                max_i = min(max_i, max(deadline - self.cpu.icount, 0))
            else:
                max_c = min(max_c, max(deadline - now, 0))
        return max_i, max_c

    def _console_split(self, detail: dict, insns: int, cycles: int):
        """The CPU's ``console_out`` (native, nobody watching): a batch
        ended with an out to the console, ``insns`` and ``cycles`` its
        counts.  Do what ``_vcpu`` does after such a batch
        and before the next -- or nothing and return None when that is
        more than taking the cycles, ticking the timer and writing the
        character (another event is due first) -- and return the next
        batch's budgets: the vCPU goes on without leaving the CPU."""
        owed = self._owed = self._owed + cycles
        env = self.env
        env_now = env.now
        if owed >= env.peek() - env_now:
            return None                    # _vcpu takes it, as after any batch
        self._split_tick()
        self.io.write_console(detail["value"])
        return self._next_budgets(env_now, owed)

    def _console_exit_split(self, detail: dict, insns: int, cycles: int):
        """``_console_split`` under a VMM, where the out to the console is
        an I/O exit: what ``_vcpu`` and the monitor's ``handle`` and ``_io``
        do with it (the exit counted, its cycles owed, the instruction
        retired, the character written) when the exit takes no simulated
        time past the next event and nobody watches (no trace, no checks
        of every exit).  The record of the exit is never made."""
        if insns > self._direct_outs:
            self.host.release(self.name)   # progress: its exits' pages may go
        self._direct_outs = 0
        vmm = self.vmm
        costs = vmm.costs
        owed = self._owed = self._owed + cycles
        env = self.env
        env_now = env.now
        total = owed + costs.vm_exit + costs.vmm_io
        if total >= env.peek() - env_now:
            return None                    # the exit goes the whole way
        cpu = self.cpu
        self._split_tick()
        exits, spent = vmm.exits, vmm.cycles
        exits["io"] = exits.get("io", 0) + 1
        vmm.mmu.restart_vpn = None
        spent["vm_exit"] = spent.get("vm_exit", 0) + costs.vm_exit
        spent["io"] = spent.get("io", 0) + costs.vmm_io
        self._owed = total
        cpu.eip = detail["next_eip"]       # (the monitor's advance)
        cpu.icount += 1
        self.io.write_console(detail["value"])
        return self._next_budgets(env_now, total)

    def _split_tick(self) -> None:
        """The instruction clock's tick after a batch (``_vcpu``); the cycle
        clock's timer is a process of its own, and its next tick is an event
        that comes after the split (or there is no split)."""
        if self.config.clock == "instructions" and self.timer.due(self.cpu.icount):
            self._tick()

    def _next_budgets(self, env_now, owed: int):
        """The budgets of the batch that follows a console split in place."""
        now = int(env_now) + owed
        left = self.config.max_cycles - now
        if left <= 0:
            return 0, 0                    # the batch ends at once: _vcpu ends the run
        budgets = self._budgets(left, now)  # (0 in either: _vcpu lets the timer act)
        self._direct_slack, self._direct_c0 = left - budgets[1], self.cpu.cycles
        return budgets

    # No other event can come before the batch ends (``Cpu.console_direct``).
    # The batch's cycle budget counts only its instructions' own cycles: what
    # it owes besides -- deliveries and walks (``cpu.cycles`` and the MMU's
    # stall, taken at the batch's end), exits -- is seen at each split, which
    # may cut the next budget short.  So a character goes on in the batch
    # only while all that leaves the batch's budget within the run's
    # (``_direct_slack``): then the batch stops where the run would have.
    def _direct_room(self, cost: int) -> bool:
        cpu = self.cpu
        return cpu.cycles - self._direct_c0 + cpu.mmu.stall + cost <= self._direct_slack

    def _console_direct(self, value: int) -> bool:
        """Natively: write the character."""
        cpu = self.cpu                  # (_direct_room(0), inline: every character)
        if cpu.cycles - self._direct_c0 + cpu.mmu.stall > self._direct_slack:
            return False
        self.io.write_console(value)
        return True

    def _console_exit_direct(self, value: int) -> bool:
        """Under a VMM: what ``_console_exit_split`` does with the exit, in
        the batch.  The outs answered so are no progress of the batch's own
        (``_direct_outs``): a page its last exit pinned stays pinned, as
        when each out ends the batch."""
        vmm = self.vmm
        costs = vmm.costs
        cost = costs.vm_exit + costs.vmm_io
        if not self._direct_room(cost):
            return False
        self._direct_slack -= cost
        self._direct_outs += 1
        exits, spent = vmm.exits, vmm.cycles
        exits["io"] = exits.get("io", 0) + 1
        vmm.mmu.restart_vpn = None
        spent["vm_exit"] = spent.get("vm_exit", 0) + costs.vm_exit
        spent["io"] = spent.get("io", 0) + costs.vmm_io
        self._owed += cost
        self.io.write_console(value)
        return True

    def _take_owed(self):
        """Take the cycles the vCPU owes (a generator)."""
        if self._owed:
            owed, self._owed = self._owed, 0
            yield self.env.timeout(owed)

    def _handle(self, stop: Stop):
        """React to a stop; returns True when the run is over."""
        d = stop.detail
        if stop.reason == "io":
            return self._io(d["port"], d["value"], d["reg"])
        if stop.reason == "halt":
            return (yield from self._halt())
        if stop.reason == "shutdown":
            self._end("crash", self.shutdown_message(d))
            return True
        if stop.reason == "crash":
            self._end("crash", f"{d['message']} (eip {d.get('eip', self.cpu.eip):#010x})")
            return True
        exit = d["exit"]
        self._end("crash", f"unexpected VM exit {exit.reason}")
        return True

    def _act(self, outcome):
        """Act on the VMM's answer to an exit that does not resume the
        guest at once; returns True when the run is over (a generator)."""
        action = outcome.action
        if action is Action.HALT:
            return (yield from self._halt())
        if action is Action.IO:
            io = outcome.exit
            return self._io(io.port, io.value, io.reg)
        if action is Action.SHUTDOWN:
            self._end("crash", self.shutdown_message(outcome.detail))
            return True
        if action is Action.CRASH:
            d = outcome.detail
            self._end("crash", f"{d['message']} (eip {d.get('eip', self.cpu.eip):#010x})")
            return True
        return False

    def shutdown_message(self, detail: dict) -> str:
        """A triple fault's report, from its first exception (with the
        source line of its eip), the same in every mode."""
        if not detail.get("chain"):
            return detail.get("message", "triple fault")

        def where(eip: int) -> str:
            src = self.image.source_at(eip)
            if src is None:
                return ""
            return f" ({os.path.basename(src.file)}:{src.line}: `{src.text}`)"
        return shutdown_report(detail["chain"], where)

    def _io(self, port: int, value, reg) -> bool:
        if value is None:
            self.cpu.port_in(reg, self.io.read(port))
            return False
        try:
            self.io.write(port, value, self.clock_now())
        except PowerOff as p:
            self.exit_status = p.status
            self._end("poweroff", f"powered off with status {p.status}")
            return True
        if port == 0x40 and self._timer_changed is not None:
            ev, self._timer_changed = self._timer_changed, None
            ev.succeed()
        return False

    def _halt(self):
        cpu, timer = self.cpu, self.timer
        if not cpu.iflag:
            self._end("crash", f"hlt with interrupts disabled at eip {cpu.eip:#010x}: "
                      "the machine can never wake")
            return True
        if timer.deadline is None and not cpu.irq_pending:
            self._end("crash", f"hlt at eip {cpu.eip:#010x} with no timer programmed: "
                      "the machine can never wake")
            return True
        if cpu.irq_pending:
            return False
        if self.config.clock == "instructions":
            # Nothing retires while halted: the next tick comes at once.
            self._tick()
        else:
            # Sleep until the next tick, but not past the cycle budget.
            self._wake = self.env.event()
            left = max(self.config.max_cycles - int(self.env.now), 0)
            yield self._wake | self.env.timeout(left)
            self._wake = None
        return False

    def _tick(self) -> None:
        self.timer.fire()
        self.cpu.raise_irq()
        if self.bus.active:
            self.bus.emit("timer_tick", ticks=self.timer.ticks)
        if self._wake is not None:
            ev, self._wake = self._wake, None
            ev.succeed()

    def _timer_process(self):
        """The cycle-clock timer: raises the interrupt line at its deadlines."""
        env, timer = self.env, self.timer
        while self.outcome is None:
            if timer.deadline is None:
                self._timer_changed = env.event()
                yield self._timer_changed
                continue
            self._timer_changed = env.event()
            delay = max(timer.deadline - int(env.now), 0)
            yield env.timeout(delay) | self._timer_changed
            if timer.due(int(env.now)):
                self._tick()

    def _end(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        self.message = message
        if self.bus.active:
            self.bus.emit("run_end", outcome=outcome, message=message)
        if self.vmm is not None and not self._own_host:
            self._leave_host()
