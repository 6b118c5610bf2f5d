"""A run: the simpy Environment, the vCPU process, the timer, the devices.

The vCPU is a simpy process that runs the CPU in batches: each batch ends at
the next device deadline (the timer's next tick), the cycle budget, or a stop
the CPU cannot handle alone (I/O, ``hlt``, a VM exit, a triple fault), and
costs one ``env.timeout`` of the cycles it used.  Simulated time is in
cycles of the cost model's clock.  The timer is a device; with the cycle
clock it is also a simpy process that raises the interrupt line at its
deadlines, with the instruction clock its deadlines are in the vCPU's own
retired-instruction count and the vCPU checks them after each batch.
The processes are in ``system_vcpu.py`` (a mixin ``System`` inherits).

``System(image, config).run()`` returns a ``Result``: what the guest did
(outcome, exit status, console, registers, memory hash) and what it cost
(instructions, cycles, host time, every component's counters).
"""

from __future__ import annotations

import time
from copy import deepcopy
from dataclasses import dataclass, field, fields, replace

import simpy

from .asm import Image
from .cost import DEFAULT_COSTS, CostModel
from .errors import ConfigError, ImageError
from .hw.cpu import INTERCEPTS, Cpu
from .hw.devices import Console, IoBus, Timer
from .hw.memory import MemoryImage, PhysMem
from .hw.mmu import Mmu
from .hw.nested import NestedWalker
from .hw.tlb import POLICIES, Tlb
from .simenv import Environment
from .system_vcpu import BATCH_CYCLES, VcpuMixin  # noqa: F401  (BATCH_CYCLES re-exported)
from .trace import TraceBus
from .vmm.host import Host
from .vmm.nested import NestedMonitor
from .vmm.platform import ShadowMonitor
from .vmm.pmap import GuestPhys, OutOfMachineMemory, PMap
from .vmm.shadow import POLICIES as SHADOW_POLICIES

MODES = ("native", "shadow", "nested")
CLOCKS = ("instructions", "cycles")
TLB_KINDS = ("split", "unified")
MIB = 1 << 20
STUDENT_HANDLER_LIMIT = 5.0    # host seconds a handler of a --vmm file may run
MAX_CYCLES = 1 << 62           # largest cycle budget or interval an option takes


@dataclass(frozen=True)
class Config:
    """Everything that shapes a run (each field is a command-line option)."""

    mode: str = "shadow"
    mem_mib: int = 16               # guest RAM (guest-physical space)
    machine_mib: int | None = None  # machine memory under a VMM (default: RAM + 25%, >= 4 MiB)
    shadow_policy: str = "trace-cache"
    check_invariants: bool = False  # run the resource-control check after every exit
    max_cycles: int = 200_000_000   # the budget: a runaway guest stops here
    clock: str = "instructions"     # what the timer counts
    tlb_entries: int = 64
    tlb_ways: int = 4
    tlb_policy: str = "lru"
    tlb_kind: str = "split"         # split ITLB/DTLB, or one unified TLB
    tlb_large: int = 8              # entries for 4 MiB pages (per TLB)
    ntlb_entries: int = 16          # nested-translation cache (nested mode; 0: none)
    swap_latency: int = 20_000      # cycles per swap-disk transfer, before the data
    swap_bandwidth: int = 4         # bytes per cycle of the swap disk
    share_interval: int = 0         # cycles between sharing scans (0: no sharing)
    reserve_pages: int = 16         # free machine pages kept for the VMM's own tables
    seed: int = 0                   # for the random TLB policy
    vmm: str | None = None          # a shadow-paging VMM's file (emu lab); None: the built-in
    costs: CostModel = DEFAULT_COSTS

    def validate(self) -> Config:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode '{self.mode}' (choose from {', '.join(MODES)})")
        if not 1 <= self.mem_mib <= 1024:
            raise ConfigError(f"--mem-mib must be between 1 and 1024, not {self.mem_mib}")
        if self.machine_mib is not None and not 1 <= self.machine_mib <= 4096:
            raise ConfigError(f"--machine-mib must be between 1 and 4096, not {self.machine_mib}")
        if self.shadow_policy not in SHADOW_POLICIES:
            raise ConfigError(f"--shadow-policy must be one of {', '.join(SHADOW_POLICIES)}")
        if not 1 <= self.max_cycles <= MAX_CYCLES:
            raise ConfigError(f"--max-cycles must be between 1 and 2**62, not {self.max_cycles}")
        if not 0 <= self.seed < 1 << 64:
            raise ConfigError(f"--seed must be between 0 and 2**64 - 1, not {self.seed}")
        if not 0 <= self.share_interval <= MAX_CYCLES:
            raise ConfigError(f"--share-interval must be between 0 and 2**62 cycles, "
                              f"not {self.share_interval}")
        if not 0 <= self.swap_latency <= 1 << 32:
            raise ConfigError(f"--swap-latency must be between 0 and 2**32 cycles, "
                              f"not {self.swap_latency}")
        if self.clock not in CLOCKS:
            raise ConfigError(f"--clock must be one of {', '.join(CLOCKS)}")
        if self.tlb_policy not in POLICIES:
            raise ConfigError(f"--tlb-policy must be one of {', '.join(POLICIES)}")
        if self.tlb_kind not in TLB_KINDS:
            raise ConfigError(f"--tlb-kind must be one of {', '.join(TLB_KINDS)}")
        if not 1 <= self.tlb_entries <= 1 << 16:
            raise ConfigError("--tlb-entries must be between 1 and 65536")
        if not 0 <= self.ntlb_entries <= 4096:
            raise ConfigError("--ntlb-entries must be between 0 and 4096")
        if not 1 <= self.tlb_large <= 1024:
            raise ConfigError("--tlb-large must be between 1 and 1024")
        if self.tlb_ways < 1 or self.tlb_entries % self.tlb_ways:
            raise ConfigError("--tlb-ways must divide --tlb-entries")
        sets = self.tlb_entries // self.tlb_ways
        if sets & (sets - 1):
            raise ConfigError("--tlb-entries / --tlb-ways must be a power of two")
        return self

    def with_(self, **changes) -> Config:
        return replace(self, **changes)

    @property
    def machine_bytes(self) -> int:
        if self.machine_mib is not None:
            return self.machine_mib * MIB
        return self.mem_mib * MIB + max(4 * MIB, self.mem_mib * MIB // 4)


@dataclass
class Result:
    """What a run did and what it cost."""

    mode: str
    outcome: str                    # poweroff | crash | budget
    exit_status: int | None
    message: str
    console: str
    instructions: int
    cycles: int
    host_seconds: float
    registers: dict
    memory: MemoryImage = field(repr=False)   # guest memory at the end
    stats: dict = field(default_factory=dict)

    @property
    def guest_memory_sha256(self) -> str:
        """SHA-256 of all guest-physical memory (computed when first asked)."""
        return self.memory.sha256()

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "memory":
                out["guest_memory_sha256"] = self.guest_memory_sha256
            else:
                out[f.name] = deepcopy(getattr(self, f.name))
        return out

    def guest_visible(self) -> dict:
        """The part of the result the guest can tell: equal in every mode.
        The instructions retired are part of it: the timer counts them."""
        return {"outcome": self.outcome, "exit_status": self.exit_status,
                "instructions": self.instructions,
                "console": self.console, "registers": self.registers,
                "guest_memory_sha256": self.guest_memory_sha256}


class System(VcpuMixin):
    """One machine running one guest image."""

    def __init__(self, image: Image, config: Config = Config(),
                 bus: TraceBus | None = None, console_sink=None, *,
                 host: Host | None = None, name: str = "vm0", vmm_class=None):
        """``host``: the machine this VM shares with others (``multi.py``);
        by default a VM has a host of its own.  ``vmm_class``: the shadow
        VMM (a ``ShadowVmm`` subclass; the built-in one by default)."""
        self.config = config.validate()
        self.image = image
        self.name = name
        self.vmm_class = vmm_class
        self._own_host = host is None
        self._ended = None      # (memory, figures) once the VM has left a shared host
        self.bus = bus or TraceBus()
        self.env = host.env if host is not None else Environment()
        self.bus.clock = lambda: int(self.env.now)
        c = config
        ram = c.mem_mib * MIB
        self.vmm = None
        if c.mode == "native":
            self.mem = PhysMem(ram, "pa")      # the CPU's memory is guest RAM
            self.guest = self.mem
        else:
            self.host = host or Host(self.env, c.machine_bytes, reserve=c.reserve_pages,
                                     swap_latency=c.swap_latency,
                                     swap_bandwidth=c.swap_bandwidth,
                                     share_interval=c.share_interval)
            self.machine = self.host.machine
            self.pmap = PMap(name, ram, self.machine)
            self.guest = GuestPhys(self.pmap)
            self.mem = self.machine.mem        # the CPU's memory is machine memory
        self.itlb = Tlb(c.tlb_entries, c.tlb_ways, c.tlb_policy, c.seed, "itlb", c.tlb_large)
        self.dtlb = (self.itlb if c.tlb_kind == "unified" else
                     Tlb(c.tlb_entries, c.tlb_ways, c.tlb_policy, c.seed + 1, "dtlb",
                         c.tlb_large))
        self.mmu = Mmu(self.mem, self.itlb, self.dtlb, c.costs)
        self.cpu = Cpu(self.mmu, c.costs)
        self._wire_trace()
        if self.vmm_class is None and c.mode == "shadow":
            if c.vmm is not None:
                from .lab.loader import load_vmm  # a student's file: one-line errors
                self.vmm_class = load_vmm(c.vmm)
            else:
                from .vmm.builtin import BuiltinShadowVmm
                self.vmm_class = BuiltinShadowVmm
        if c.mode != "native":
            collaborators = dict(name=name, env=self.env, bus=self.bus, costs=c.costs,
                                 cpu=self.cpu, mmu=self.mmu, host=self.host, pmap=self.pmap,
                                 guest=self.guest)
        if c.mode == "shadow":
            self.cpu.intercepts = INTERCEPTS
            self.vmm = ShadowMonitor(vmm_class=self.vmm_class, policy=c.shadow_policy,
                                     **collaborators)
            if c.vmm is not None:
                self.vmm.handler_limit = STUDENT_HANDLER_LIMIT
        elif c.mode == "nested":
            walker = NestedWalker(self.mem, lambda: bool(self.cpu.cr0 & 0x80000000),
                                  c.ntlb_entries)
            self.mmu.walker = walker
            self.mmu.large_pages = False
            self.cpu.nested = True
            self.mmu.set_control(True, False, False, False)
            self.cpu.intercepts = frozenset({"hlt", "io"})
            self.vmm = NestedMonitor(walker=walker, **collaborators)
        if self.vmm is not None:
            self.guest.on_write = self.mmu.code_written
            self.host.attach(name, self.pmap, self.vmm, self.bus, lambda: self.finished)
            if c.check_invariants:
                from .vmm.host_invariants import check_host
                from .vmm.invariants import check_vmm
                self.vmm.check = lambda: (check_vmm(self.vmm), check_host(self.host, name))
                if self._own_host:
                    self.host.check = check_host
        self.console = Console(console_sink)
        self.timer = Timer(c.clock)
        self.io = IoBus(self.console, self.timer)
        self.outcome: str | None = None
        self.exit_status: int | None = None
        self.message = ""
        self.progress = None        # callable(system) every batch, for live views
        self._owed = 0              # cycles run and not yet taken (vmm/runtime.py)
        self._vcpu_process = None
        # At most this many instructions per batch (None: no limit); a driver
        # that steps instruction by instruction sets it to 1.  0 holds the
        # vCPU between batches: it takes zero-time pauses (``held`` is True)
        # until the driver sets another value, so the driver (the stepper)
        # can stop after a VM entry, before the guest runs again.
        self.max_batch_insns: int | None = None
        self.held = False
        # Why the last batch stopped ("exit": the VMM answers it before the
        # next batch, which may retire the instruction -- a driver that
        # stops at addresses holds the vCPU after it).
        self.last_stop: str | None = None
        self._wake: simpy.Event | None = None
        self._timer_changed: simpy.Event | None = None
        self.host_seconds = 0.0
        self._load(image)

    # --- set-up ------------------------------------------------------------
    def _load(self, image: Image) -> None:
        for addr, data in image.segments:
            if addr + len(data) > self.guest.size:
                raise ImageError(
                    f"{image.source_name}: the image's bytes at {addr:#x}..."
                    f"{addr + len(data):#x} do not fit in {self.config.mem_mib} MiB "
                    "of guest RAM (try --mem-mib)")
            try:
                self.guest_write(addr, data)
            except OutOfMachineMemory:
                raise ImageError(
                    f"{image.source_name}: {self.config.machine_bytes >> 20} MiB of machine "
                    "memory cannot hold the image (try a larger --machine-mib)") from None
        self.cpu.eip = image.entry

    def _wire_trace(self) -> None:
        """Hardware events reach the bus only while somebody listens."""
        bus, mmu = self.bus, self.mmu
        walk_kind = {"native": "walk", "shadow": "shadow_walk",
                     "nested": "nested_walk"}[self.config.mode]

        def step6(vpn: int) -> int | None:
            # The walk and fill that restart the instruction of a #PF exit.
            return mmu.step_of(vpn)

        def on_walk(w):
            if bus.active and w.fault is False:
                extra = {}
                if walk_kind == "nested_walk":
                    extra["grid"] = [list(r) for r in mmu.walker.last_grid]
                bus.emit(walk_kind, va=w.va, step=step6(w.va >> 12), refs=w.refs,
                         frame=w.frame, **extra)

        def on_fill(e, fetch):
            if bus.active:
                step = step6(e.vpn)
                if step is not None:
                    mmu.expect_restart(None)
                bus.emit("tlb_fill", va=e.vpn << 12, step=step, pn=e.pn, fetch=fetch,
                         writable=e.writable, user=e.user)
        def on_cpu_event(kind, **data):
            if bus.active:
                bus.emit(kind, va=data.get("cr2"), **data)
        def on_miss(va, fetch):
            if bus.active:
                bus.emit("tlb_miss", va=va, fetch=fetch)   # step 1 only if a fault follows
        mmu.trace_walk = on_walk
        mmu.on_fill = on_fill
        mmu.on_miss = on_miss
        mmu.watch = bus                 # the hooks are called only while it is active
        self.cpu.on_event = on_cpu_event

    def guest_write(self, pa: int, data: bytes) -> None:
        """Write guest-physical memory (loading, tests)."""
        self.guest.write(pa, data)

    def guest_read(self, pa: int, n: int) -> bytes:
        if self._ended is not None:
            return self._ended[0].read(pa, n)
        return self.guest.read(pa, n)

    def guest_memory_sha256(self) -> str:
        return self.guest_image().sha256()

    def guest_image(self):
        """Guest-physical memory now (as it ended, once the VM left its host)."""
        return self._ended[0] if self._ended is not None else self.guest.image()

    def _leave_host(self) -> None:
        """The run has ended on a machine it shares with other VMs: what it
        ended with is kept (its memory and its figures), and the host takes
        every machine page it held back for the VMs still running."""
        stats = self.stats()
        del stats["host"]
        self._ended = (self.guest.image(), stats)
        self.host.detach(self.name)

    # --- running -------------------------------------------------------------
    def start(self):
        """Create the simpy processes (vCPU, and the timer under the cycle
        clock) without running them: a driver such as the stepper then calls
        ``env.step()``.  Returns the vCPU process (it ends with the run)."""
        if self._vcpu_process is None:
            if self.vmm is not None and self._own_host:
                self.host.start()
            self._vcpu_process = self.env.process(self._vcpu())
            if self.config.clock == "cycles":
                self.env.process(self._timer_process())
        return self._vcpu_process

    def run(self) -> Result:
        """Run the guest to its end; returns the ``Result``."""
        t0 = time.perf_counter()
        vcpu = self.start()
        self.env.run(until=vcpu)
        self.host_seconds += time.perf_counter() - t0
        return self.result()

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def result(self) -> Result:
        return Result(
            mode=self.config.mode, outcome=self.outcome or "budget",
            exit_status=self.exit_status, message=self.message,
            console=self.console.text(), instructions=self.cpu.icount,
            cycles=int(self.env.now), host_seconds=round(self.host_seconds, 6),
            registers=self.cpu.registers(),
            memory=self.guest_image(), stats=self.stats())

    def stats(self) -> dict:
        if self._ended is not None:
            return {**self._ended[1], "host": self.host.stats()}
        out = {"cpu": self.cpu.stats(), "mmu": self.mmu.stats(),
               "timer": self.timer.stats(), "console": self.console.stats(),
               "io": self.io.stats(), "memory": {"pages_touched": self.mem.touched()},
               "cycles_by_category": self.cycles_by_category(),
               "trace_events": self.bus.count}
        if self.vmm is not None:
            out["vmm"] = self.vmm.stats()
            out["host"] = self.host.stats()
        return out

    def cycles_by_category(self) -> dict:
        walk = self.mmu.walk_refs * self.config.costs.walk_ref
        out = {"guest": self.cpu.cycles - walk, "walk": walk}
        if self.vmm is not None:
            for cat, cyc in sorted(self.vmm.cycles.items()):
                out["vmm_" + cat if not cat.startswith("vm_") else cat] = cyc
        return out


def run(image: Image, config: Config = Config(), bus: TraceBus | None = None,
        console_sink=None) -> Result:
    """Build a system for ``config`` and run ``image`` on it."""
    return System(image, config, bus, console_sink).run()
