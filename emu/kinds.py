"""Every kind of trace event, with what it says (``Event.kind`` -> meaning).

``docs/api.md`` shows how to read them; ``step`` is the step of a
virtualized translation (1-6) where the event is one, ``va`` the virtual
address it concerns.  ``tests/test_api.py`` runs guests in every mode that
take every kind of fault, swap and share pages, and checks that the kinds
they emit are exactly these.
"""

EVENT_KINDS: dict[str, str] = {
    # the hardware
    "tlb_miss": "a TLB lookup missed (fetch: the instruction TLB)",
    "walk": "natively: the hardware walked the guest's table and found the page",
    "shadow_walk": "shadow paging: the hardware walked the shadow table (step 1 when it "
                   "faulted, step 6 when the restart's walk succeeds)",
    "nested_walk": "nested paging: the two-dimensional walk (grid: every reference; "
                   "error_code: the access's)",
    "tlb_fill": "a translation went into the TLB (step 6: the restart of a fault)",
    "deliver": "the CPU delivered an exception or interrupt through the guest's IDT",
    "timer_tick": "the timer raised its interrupt",
    # the VMM
    "vm_exit": "a VM exit: reason, eip, error code (step 2 for a fault exit)",
    "guest_walk": "step 2: the VMM walked the guest's table (values before and after)",
    "true_fault": "step 3: the guest's table denies the access: the fault is the guest's",
    "hidden_fault": "step 3: the guest allows it, the shadow lacked it",
    "dirty_fault": "step 3: the first write to a page mapped read-only to catch it (D)",
    "tracing_fault": "step 3: a write to a write-protected guest page table",
    "unsync_fault": "step 3: the first write to a guest table under an oos policy",
    "wp-emulate_fault": "step 3: CR0.WP=0 lets the kernel write a read-only page",
    "cow_fault": "step 3: a write to a page the VMM shares between VMs",
    "nested_fault": "step 3: an EPT violation: no nested entry for the guest-physical page",
    "pmap_lookup": "step 3: the PMap's machine page for a guest-physical page (and how)",
    "inject": "step 3: the VMM injected an exception into the guest",
    "shadow_fill": "step 4: the VMM wrote an spte",
    "nested_fill": "step 4: the VMM wrote an npte",
    "emulate": "step 4: the VMM let one write through and synced the shadows",
    "vm_entry": "back to the guest: resume, inject or emulate (step 5 after a fault exit)",
    "cr3_load": "the guest loaded CR3; the VMM switched shadow roots",
    "invlpg": "the guest invalidated a page; the VMM dropped its sptes",
    # the host
    "reclaim": "the host took a machine page from a VM (to the swap disk, or a zero page)",
    "swap_in": "the host read a guest page back from the swap disk",
    "cow_break": "a write to a shared page got a private copy",
    "page_shared": "the sharing scan merged identical pages",
    "tables_freed": "no guest page could go: the VMM freed shadow pages it was not walking",
    # the run
    "run_end": "the run ended: outcome and message",
}
