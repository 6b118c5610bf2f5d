"""The cost model: how many simulated cycles each thing takes.

simpy time is in cycles of this clock.  Every number is named here and
nowhere else; runs report where their cycles went by category, so the three
modes (native, shadow, nested) can be compared on the same work.

Sources for the orders of magnitude:
* Instruction and memory-reference costs are those of a simple in-order core
  with a data cache that hits: one cycle per instruction, per the ISA table,
  plus one per memory reference.
* A page-walk reference costs what a memory reference that misses the L1 and
  hits further out costs: ~20 cycles (Bhargava et al., ASPLOS 2008, measure
  page walks of tens of cycles per reference on AMD Barcelona).
* A VM exit plus VM entry costs ~1,000 cycles or more: Adams & Agesen
  (ASPLOS 2006) measured a VMX round trip of 2,409 cycles on a Pentium 4 and
  ~1,000 on later cores; KVM's own measurements on Nehalem-era parts are in
  the same range.  We use 600 for the exit and 400 for the entry.
* VMM software steps are charged per page-table reference they make (same
  as a walk reference) plus fixed bookkeeping costs; zeroing a fresh 4 KiB
  machine page costs one cycle per 8 bytes (~512).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class CostModel:
    """Cycles charged for each event (all integers)."""

    mem_ref: int = 1             # a data reference that hits the TLB
    walk_ref: int = 20           # one page-table reference by the hardware walker
    interrupt: int = 20          # delivering an exception or interrupt via the IDT
    vm_exit: int = 600           # guest -> VMM transition (saving guest state)
    vm_entry: int = 400          # VMM -> guest transition
    vmm_walk_ref: int = 20       # one guest page-table reference by the VMM
    vmm_pmap_lookup: int = 30    # PMap lookup (hash probe)
    vmm_alloc: int = 100         # allocate a machine page (free-list pop)
    vmm_zero_page: int = 512     # zero a fresh 4 KiB machine page
    vmm_fill_shadow: int = 40    # compute and write one shadow entry
    vmm_emulate: int = 200       # decode and emulate one guest instruction
    vmm_flush: int = 50          # fixed cost of dropping shadow state
    vmm_inject: int = 50         # set up an injected guest exception
    vmm_io: int = 100            # emulate a port access

    def describe(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULT_COSTS = CostModel()
