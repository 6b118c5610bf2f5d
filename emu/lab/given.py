"""Working code a lab level gives, for the parts a later level asks for.

A skeleton binds them into the student's class (``handle_cr3_write =
given.handle_cr3_write``); the level that teaches a part replaces the line
with the student's own method.  They are the simplest correct VMM: the
shadow tables stand for a big TLB -- a CR3 load or a CR0/CR4 change drops
every shadow, an INVLPG drops the entry of its page -- which x86's rules
allow, because a guest that edits a live page-table entry must invalidate
it before it may count on the change.  (It is slow: every address-space
switch starts the shadows again.  Levels 4 and 5 make it fast.)
"""

from __future__ import annotations

from ..hw.exits import CrWriteExit, InvlpgExit
from ..hw.paging import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, pdx, ptx
from ..vmm.builtin import BuiltinShadowVmm

PAGE_MASK = 0xFFFFF000


def switch_root(vmm) -> None:
    """Load the hardware's CR3 with the shadow root for the guest's state:
    the shadow of its page directory, or the physical-mode one."""
    hw = vmm.hw
    if hw.guest.paging:
        root, _ = hw.shadow.ensure(("pd", (hw.guest.cr3 & PAGE_MASK) >> 12))
    else:
        root, _ = hw.shadow.ensure(("phys-pd", 0))
    hw.tlb.load_root(root)


def handle_cr3_write(vmm, exit: CrWriteExit) -> None:
    """A CR3 load: record it, drop every shadow, start a shadow of the new
    directory."""
    vmm.hw.guest.cr3 = exit.value
    vmm.hw.shadow.drop_all()
    switch_root(vmm)


def handle_cr0_write(vmm, exit: CrWriteExit) -> None:
    """A CR0 write: record it; PG or WP changed: the TLB and the shadows go."""
    hw = vmm.hw
    old, hw.guest.cr0 = hw.guest.cr0, exit.value
    if (old ^ exit.value) & (CR0_PG | CR0_WP):
        hw.shadow.drop_all()
        hw.tlb.flush()
        switch_root(vmm)


def handle_cr4_write(vmm, exit: CrWriteExit) -> None:
    """A CR4 write: record it; PSE or PGE changed: the TLB and the shadows go."""
    hw = vmm.hw
    old, hw.guest.cr4 = hw.guest.cr4, exit.value
    if (old ^ exit.value) & (CR4_PSE | CR4_PGE):
        hw.shadow.drop_all()
        hw.tlb.flush()
        switch_root(vmm)
    hw.tlb.set_global_pages(hw.guest.pge)


def handle_invlpg(vmm, exit: InvlpgExit) -> None:
    """An INVLPG: the page's TLB entries go, and its shadow entry (a guest
    4 MiB page: the whole region's)."""
    forget_page(vmm, exit.va)


def forget_page(vmm, va: int) -> None:
    """The guest's TLB lets go of va's page (an INVLPG, a #PF at va): so do
    the shadow and the hardware's TLB."""
    hw = vmm.hw
    hw.tlb.invlpg(va)
    hw.tlb.drop_page(va)
    root = hw.root
    spde = root.entry(pdx(va))
    if spde & 1:
        child = hw.shadow.by_mpn.get(spde >> 12)
        if child is not None and child.role == "4m":
            hw.shadow.drop_entry(root, pdx(va))        # the whole 4 MiB region
            hw.tlb.invlpg_range(pdx(va) << 10, 1024)
        elif child is not None:
            hw.shadow.drop_entry(child, ptx(va))


# The host's hooks (level 7), as the built-in VMM has them.
evictable = BuiltinShadowVmm.evictable
referenced = BuiltinShadowVmm.referenced
unmap_page = BuiltinShadowVmm.unmap_page
