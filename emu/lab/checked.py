"""The student's VMM class as the lab runs it: a subclass whose handlers
(and host hooks) call the student's, then let the referee look
(``referee.py``)."""

from __future__ import annotations

from ..vmm.api import PfResult, VmmError
from .loader import time_limit
from .referee import HANDLER_LIMIT, Referee, access_text


def checked(cls, referee: Referee) -> type:
    """A subclass of the student's VMM class whose work the referee checks."""

    def control_write(vmm, handler: str, exit, cr: str, event: str) -> None:
        referee.doing = (handler, f"the guest's write of {exit.value:#010x} to {cr}")
        getattr(super(Checked, vmm), handler)(exit)
        referee.after_cr_write(exit)
        referee.check_all(event)

    class Checked(cls):
        def __init__(self, hw, policy="trace-cache"):
            referee.attach(hw)
            with time_limit(HANDLER_LIMIT, "while it was being created"):
                super().__init__(hw, policy)

        def start(self):
            with time_limit(HANDLER_LIMIT, "in start()"):
                super().start()

        def handle_page_fault(self, exit):
            referee.doing = ("handle_page_fault", f"the #PF exit at va {exit.va:#010x}, "
                             f"{access_text(exit.write, exit.user, exit.fetch)}")
            oracle = referee.before_page_fault(exit)
            result = super().handle_page_fault(exit)
            if not isinstance(result, PfResult):
                raise VmmError(f"handle_page_fault returned {result!r}, not a PfResult")
            referee.after_page_fault(exit, oracle, result)
            referee.after_page_fault_exit(exit, oracle)
            return result

        def handle_cr3_write(self, exit):
            control_write(self, "handle_cr3_write", exit, "CR3", "CR3 load")

        def handle_cr0_write(self, exit):
            control_write(self, "handle_cr0_write", exit, "CR0", "a CR0 write")

        def handle_cr4_write(self, exit):
            control_write(self, "handle_cr4_write", exit, "CR4", "a CR4 write")

        def handle_invlpg(self, exit):
            referee.doing = ("handle_invlpg", f"the guest's INVLPG of va {exit.va:#010x}")
            super().handle_invlpg(exit)
            referee.check_all(f"INVLPG of va {exit.va:#010x}")

        def referenced(self, ppn, mpn):
            used = referee.used_bits(mpn)
            result = super().referenced(ppn, mpn)
            referee.after_referenced(ppn, mpn, used, result)
            return result

    Checked.__name__ = cls.__name__
    Checked.__qualname__ = cls.__qualname__
    return Checked
