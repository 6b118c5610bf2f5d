"""The lab's levels: each a lab a course can assign, in order.

A level names what the student writes, the guests its check runs (teaching
guests from ``guest_programs/`` and the lab's own in ``guests/``), the
shadow policy the run is given, and the referee's rules.  Each level's
check also runs the guests of the levels before it: a later level must not
break an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .referee import Rules


@dataclass(frozen=True)
class Case:
    guest: str                  # "lab_touch" (emu/lab/guests) or a bundled program
    vms: int = 1                # copies on one machine
    machine_mib: int | None = None
    efficiency: float | None = None   # at most this many times the built-in VMM's #PF exits

    @property
    def name(self) -> str:
        return self.guest if self.vms == 1 else f"{self.guest} x{self.vms}"


@dataclass(frozen=True)
class Level:
    number: int
    title: str
    writes: str                 # what the student writes, one line
    policy: str                 # --shadow-policy of the runs
    rules: Rules
    tests: tuple[Case, ...]
    reading: tuple[str, ...] = field(default=())




def generated(level: int, count: int = 3) -> tuple[Case, ...]:
    """``count`` seeded kernels of gen.py for ``level``."""
    return tuple(Case(f"gen-{level}-{seed}") for seed in range(count))


LEVELS = (
    Level(1, "hidden faults", "handle_page_fault: steps 2 to 5 for accesses the guest allows",
          "trace-drop", Rules(),
          (Case("lab_touch"), Case("hello"), Case("syscalls"), Case("tlbthrash"),
           Case("bigpages")),
          ("docs/design.md: the six steps", "emu/vmm/api.py: the API",
           "emu/vmm/page_fault.py: the built-in VMM's fault path")),
    Level(2, "true faults", "handle_page_fault: inject the guest's own #PF, exact error code",
          "trace-drop", Rules(),
          (Case("lab_true"), Case("paging"), Case("exceptions"), Case("bad_triple"),
           *generated(2)),
          ("Intel SDM vol. 3A, 4.7: page-fault exceptions and their error code",)),
    Level(3, "accessed and dirty bits", "fill_shadow: writable only once the gpte is dirty",
          "trace-drop", Rules(exact_dirty=True),
          (Case("lab_dirty"), Case("lab_touch"), *generated(3)),
          ("Intel SDM vol. 3A, 4.8: accessed and dirty flags",)),
    Level(4, "guest page-table writes",
          "a write to a shadowed guest table: emulate it, drop what it changed",
          "trace-drop", Rules(exact_dirty=True, follow_writes=True),
          (Case("lab_ptwrite"), Case("demand"), *generated(4)),
          ("emu/vmm/emulate.py: how the built-in VMM lets one write through",)),
    Level(5, "CR3 switches with a shadow cache",
          "handle_cr3_write: keep every shadow, switch to the new directory's",
          "trace-cache", Rules(exact_dirty=True, follow_writes=True),
          (Case("multiproc", efficiency=1.5), Case("forkwait", efficiency=1.5),
           Case("demand", efficiency=1.5)),
          ("Adams and Agesen, 'A comparison of software and hardware techniques "
           "for x86 virtualization', ASPLOS 2006: tracing and the shadow cache",)),
    Level(6, "out-of-sync page tables",
          "let written tables go out of sync; resync at every invalidation event",
          "oos-cache", Rules(exact_dirty=True, follow_writes=True, oos=True),
          (Case("lab_inval"), Case("lab_ptwrite"), Case("forkwait", efficiency=1.5),
           Case("multiproc"), *generated(6)),
          ("docs/design.md: invalidation events (Intel SDM vol. 3A, 4.10.4)",)),
    Level(7, "reclaim and swap", "evictable, referenced, unmap_page: the host's hooks",
          "trace-cache", Rules(exact_dirty=True, follow_writes=True),
          (Case("lab_swap", vms=2, machine_mib=1), Case("lab_swap", vms=3, machine_mib=2)),
          ("docs/design.md: machine pages and their states",
           "Waldspurger, 'Memory resource management in VMware ESX Server', OSDI 2002")),
)


def level(n: int) -> Level:
    for lv in LEVELS:
        if lv.number == n:
            return lv
    raise KeyError(n)
