"""A worked solution of ``emu lab`` level 1: hidden faults.

    emu lab check examples/lab/level1.py --level 1
    emu step lab_touch --vmm examples/lab/level1.py

Every #PF exit here is a hidden fault: the guest's tables allow the
access, the shadow does not have it yet.  The handler walks the guest's
table (step 2), asks the PMap for the machine page (step 3), writes the
shadow entries (step 4) and restarts the instruction (step 5).  The rest
-- CR3, CR0, CR4 and INVLPG -- is the lab's given code.
"""

from emu.hw.paging import PTE_U, PTE_W, pdx, ptx
from emu.lab import given
from emu.vmm.api import Fault, PfResult, ShadowVmm


class Level1Vmm(ShadowVmm):
    name = "a level-1 VMM: hidden faults"

    def handle_page_fault(self, exit):
        hw = self.hw
        va = exit.va
        # Step 2: the guest's own walk of va (it sets the guest's A and D bits).
        if hw.guest.paging:
            walk = hw.guest.walk(va, write=exit.write, user=exit.user, fetch=exit.fetch)
            ppn = walk.frame >> 12
        else:
            walk = None                 # paging off: the guest's va is its pa
            ppn = va >> 12
        # Step 3: a hidden fault (told to the trace: the stepper shows it); the
        # PMap gives the guest page's machine page.
        hw.classified(Fault.HIDDEN, va, ppn=ppn, write=exit.write, user=exit.user)
        mpn = hw.pmap.obtain(ppn, va, exit.write)
        # Step 4: the shadow entries.
        self.fill_shadow(va, walk, ppn, mpn)
        # Step 5: restart the instruction; the hardware walks the shadow (step 6).
        return PfResult.RETRY

    def fill_shadow(self, va, walk, ppn, mpn):
        hw = self.hw
        shadow = hw.shadow
        dx, tx = pdx(va), ptx(va)       # the directory and table indexes of va
        if walk is None:
            table, _ = shadow.ensure(("phys-pt", dx))
            shadow.link(hw.root, dx, table, PTE_W | PTE_U)
            spte = shadow.set_spte(table, tx, mpn, PTE_U, ppn, True)
        else:
            gpde = walk.levels[0].value_after
            if walk.large:              # a guest 4 MiB page: 4 KiB shadow entries
                table, _ = shadow.ensure(("4m", hw.guest.cr3 >> 12, dx))
                gpte = gpde
            else:
                table, _ = shadow.ensure(("pt", gpde >> 12))
                gpte = walk.levels[1].value_after
            shadow.link(hw.root, dx, table, gpde)
            spte = shadow.set_spte(table, tx, mpn, gpte, ppn, bool(gpte & PTE_W))
        hw.filled(va, mpn, spte)

    # Given by the lab (later levels ask for them).
    handle_cr3_write = given.handle_cr3_write
    handle_cr0_write = given.handle_cr0_write
    handle_cr4_write = given.handle_cr4_write
    handle_invlpg = given.handle_invlpg
    evictable = given.evictable
    referenced = given.referenced
    unmap_page = given.unmap_page
