"""The MMU: the one entry point of every memory access, fetches included.

Translation is va -> physical page of the memory the CPU is wired to (guest
RAM natively, machine memory under a VMM).  With CR0.PG=0 the va is the
physical address.  With paging on, the TLB answers or the walker walks the
tables at CR3 (the guest's natively, the shadow root under shadow paging).

The hit path (``hitpath.py``).  Translated code calls ``rd32/wr32/rd8/wr8``
closures that make ONE dict lookup: ``rfast``/``wfast`` map a vpn to the
page's bytearray, holding only translations the TLB has *and* whose rights
allow the access at the current CPL (a write also needs D already set).  A
page with translated code is never in ``wfast``: a write there may make
code stale.  Such a page the write is allowed to is in ``cwfast`` (vpn ->
(page, pn)), the write's second look: it goes through at once unless it
touches a byte translated code was read from (a kernel's variables beside
its code).  Everything else goes to the slow path, which consults the TLB,
walks on a miss, raises #PF, and fills the fast maps.  The fast maps are a
view of the TLB: an entry leaving the TLB leaves them (``Tlb.on_drop``); a
change of CPL, CR0.WP or paging clears them.
``ifast`` maps a vpn to the dict of translated blocks of its physical page.

Lookups are counted in bulk by the CPU (each translated block knows how many
references it makes); the slow path counts only what it adds (the second
page of a crossing access, accesses made by system instructions) and the
misses.  A miss is counted once: if the walk faults and the same page is
looked up again after the fault was handled, that is not a second miss.
"""

from __future__ import annotations

from struct import Struct

from . import hitpath, paging
from .exceptions import HPF, PF, GuestFault
from .memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PhysMem
from .mmu_invalidate import InvalidationMixin
from .tlb import Tlb, TlbEntry

_U32 = Struct("<I")
_pack32 = _U32.pack_into


def _put(page: bytearray, off: int, size: int, value: int) -> None:
    """Store the low ``size`` bytes of ``value`` at ``off`` (within the page)."""
    if size == 4:
        _pack32(page, off, value & 0xFFFFFFFF)
    else:
        page[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class Mmu(InvalidationMixin):
    """Translation for one CPU: control state, TLBs, fast maps, walker
    (invalidation: ``InvalidationMixin``, in ``mmu_invalidate.py``)."""

    STATS = {
        "walks": "page walks by the hardware walker",
        "walk_refs": "page-table references made by hardware walks",
        "page_faults": "#PF raised by translation",
        "tlb_fills": "translations inserted into a TLB",
    }

    def __init__(self, mem: PhysMem, itlb: Tlb, dtlb: Tlb, costs):
        self.mem = mem
        self.itlb = itlb
        self.dtlb = dtlb
        self.costs = costs
        # Control state (the hardware's own: under a VMM, its shadow values).
        self.paging = False
        self.cr3 = 0
        self.wp = False
        self.pse = False
        self.pge = False
        self.user = False          # CPL == 3
        self.walker = paging.walk  # replaced by the nested walker in nested mode
        # A 4 MiB mapping may take one large TLB entry only if its 1024 pages
        # are contiguous in the memory the TLB maps into: not under nested
        # paging, whose nested table maps 4 KiB pages one by one (the TLB
        # holds the smaller of the two page sizes, as on real hardware).
        self.large_pages = True
        # 4 MiB regions cached as 4 KiB entries ("splintered"): an INVLPG
        # anywhere in one drops them all, as hardware does.
        self.split_regions: set[int] = set()
        # Fast maps (see module doc) and translated code per physical page.
        self.rfast: dict[int, bytearray] = {}
        self.wfast: dict[int, bytearray] = {}
        self.cwfast: dict[int, tuple[bytearray, int]] = {}
        self.ifast: dict[int, dict] = {}
        self.code: dict[int, dict] = {}
        # The bytes of each page that translated code was read from (1 each):
        # a write elsewhere on the page (the kernel's variables beside its
        # code) leaves the page's translations as they are.  A byte stays
        # marked until a write to a marked byte drops them all (``write``).
        self.code_bytes: dict[int, bytearray] = {}
        # Statistics.
        self.walks = 0
        self.walk_refs = 0
        self.page_faults = 0
        self.tlb_fills = 0
        self.stall = 0             # cycles spent in walks, collected by the CPU
        # (vpn, is_fetch) of misses whose walk faulted: the retry after the
        # fault is handled is not a second miss (bounded: cleared on CR3 loads).
        self._missed: set[int] = set()          # (vpn << 1 | is_fetch)
        self.last_walk = None      # the record of the most recent walk (step 1 of a #PF exit)
        self.restart_vpn: int | None = None   # the page whose walk and fill are step 6
        self.trace_walk = None     # callable(walk): every hardware walk
        self.on_fill = None        # callable(entry, fetch): every TLB fill
        self.on_miss = None        # callable(va, fetch): every TLB miss (counted once)
        # An object whose ``active`` says whether the three hooks above want
        # calls now (the trace bus); None: call them always.
        self.watch = None
        self.walk_ref_cost = costs.walk_ref
        itlb.on_drop = self._drop_i
        itlb.on_flush = self._flushed_i
        if dtlb is not itlb:
            dtlb.on_drop = self._drop_d
            dtlb.on_flush = self._flushed_d
        else:
            itlb.on_drop = self._drop_both
            itlb.on_flush = self.reset_fast
        # The globals of every translated block: the hit path lives here, so
        # rebinding an entry changes it for all blocks at once.
        self.env: dict = {"_smc": False}
        self._paths = hitpath.build(self)
        self._bind_hit_path()

    @property
    def walker(self):
        """The hardware walker: ``paging.walk``, or the nested walker."""
        return self._walker

    @walker.setter
    def walker(self, walker) -> None:
        self._walker = walker
        # its walk without a record, for a run nobody watches (``translate``)
        self._quiet = paging.walk_quiet if walker is paging.walk else getattr(
            walker, "fast", None)

    # --- state changes -----------------------------------------------------
    def reset_fast(self) -> None:
        """Forget the fast maps (CPL, WP or paging changed)."""
        self.rfast.clear()
        self.wfast.clear()
        self.cwfast.clear()
        self.ifast.clear()

    def set_user(self, user: bool) -> None:
        if user != self.user:
            self.user = user
            self.reset_fast()

    def set_control(self, paging: bool, wp: bool, pse: bool, pge: bool) -> None:
        if (paging, wp, pse, pge) != (self.paging, self.wp, self.pse, self.pge):
            if paging != self.paging:
                self.paging = paging
                self._bind_hit_path()
            self.wp, self.pse, self.pge = wp, pse, pge
            self.reset_fast()

    def load_cr3(self, cr3: int) -> None:
        """A CR3 load: new root; the TLBs drop all but global entries."""
        self.cr3 = cr3 & 0xFFFFF000
        keep = self.pge
        if not keep:
            self.split_regions.clear()
        self.itlb.flush(keep)
        if self.dtlb is not self.itlb:
            self.dtlb.flush(keep)
        self._missed.clear()

    # --- the six steps: the hardware's part ----------------------------------
    # Step 1 is ``translate``'s miss: the walk of the tables at CR3 (the
    # shadow's, under shadow paging) faults, and the #PF becomes a VM exit
    # whose record carries ``last_walk``.  Step 6 is the walk and TLB fill
    # of the restarted instruction, once the VMM said which page it expects.
    def expect_restart(self, vpn: int | None) -> None:
        """Step 5: the VMM restarts the instruction that faulted on ``vpn``
        (None: no restart is due)."""
        self.restart_vpn = vpn

    def step_of(self, vpn: int) -> int | None:
        """6 for the walk and fill of the page a restart is due on."""
        return 6 if self.restart_vpn == vpn else None

    # --- translation (the slow path) --------------------------------------
    def translate(self, va: int, write: bool = False, fetch: bool = False,
                  counted: bool = True) -> tuple[bytearray, int]:
        """The physical page holding ``va`` and its page number, for this
        access at the current CPL; raises #PF.  ``counted`` is False when the
        caller already counted the lookup (the hit path's misses)."""
        vpn = va >> PAGE_SHIFT
        if not self.paging:
            page = self.mem.page(vpn)
            self._fill_fast(vpn, vpn, page, True, True, True, fetch)
            return page, vpn
        tlb = self.itlb if fetch else self.dtlb
        if counted:
            tlb.lookups += 1
        e = tlb.lookup(vpn)
        user = self.user
        if e is not None and (e.user or not user) and (
                not write or (e.dirty and (e.writable or (not user and not self.wp)))):
            if e.gpn is not None and (write or e.page is None):
                # detached (or back read-only, shared): the host brings the page
                raise GuestFault(HPF, (2 if write else 0) | (4 if user else 0)
                                 | (16 if fetch else 0), va & 0xFFFFFFFF)
            if e.large:
                pn = e.pn + (vpn & 0x3FF)
                page = self.mem.page(pn)
            else:
                pn, page = e.pn, e.page
            whole = e.gpn is None       # (back for reads only: no write fast map)
            self._fill_fast(vpn, pn, page, e.writable and whole, e.user, e.dirty and whole,
                            fetch)
            return page, pn
        # A miss, or an entry that does not allow this access: walk (Intel
        # cores re-walk to set D, and drop an entry that faults).
        watch = self.watch
        hooks = watch is None or watch.active
        missed = self._missed
        key = vpn << 1 | fetch
        if e is None and key not in missed:
            tlb.misses += 1
            if hooks and self.on_miss is not None:
                self.on_miss(va, fetch)
        quiet = self._quiet
        if not hooks and quiet is not None:
            # The walk's figures without its record (only a fault's exit and
            # a watcher read it); None: the walk is made in full.
            got = quiet(self.mem, self.cr3, va, write, user, self.wp, self.pse)
            if got is not None:
                pn, writable, user_ok, dirty, global_, large, refs = got
                self.walks += 1
                self.walk_refs += refs
                self.stall += refs * self.walk_ref_cost
                self.last_walk = None
                missed.discard(key)
                if large:       # (nested only, where the TLB holds 4 KiB entries)
                    self.split_regions.add(vpn >> 10)
                page = self.mem.pages.get(pn)
                if page is None:
                    page = self.mem.page(pn)
                tlb.insert(TlbEntry(vpn, pn, page, writable, user_ok, dirty,
                                    global_ and self.pge))
                self.tlb_fills += 1
                self._fill_fast(vpn, pn, page, writable, user_ok, dirty, fetch)
                return page, pn
        try:
            w = self._walker(self.mem, self.cr3, va, write, user, fetch, self.wp, self.pse)
        except GuestFault as f:   # an EPT violation in the middle of a 2D walk
            self.walks += 1
            self.walk_refs += f.refs
            self.stall += f.refs * self.costs.walk_ref
            if len(missed) < 64:
                missed.add(key)
            raise
        self.walks += 1
        refs = w.refs
        self.walk_refs += refs
        self.stall += refs * self.walk_ref_cost
        self.last_walk = w
        if hooks and self.trace_walk is not None:
            self.trace_walk(w)
        if w.fault:
            self.drop_page(va)
            self.page_faults += 1
            if len(missed) < 64:
                missed.add(key)
            raise GuestFault(PF, w.error_code, va & 0xFFFFFFFF)
        missed.discard(key)
        pn = w.frame >> PAGE_SHIFT
        mem_pages = self.mem.pages
        page = mem_pages.get(pn)
        if page is None:
            page = self.mem.page(pn)
        large = w.large
        if large and not self.large_pages:
            self.split_regions.add(vpn >> 10)
            large = False
        writable, user_ok, dirty = w.writable, w.user_ok, w.dirty
        if large:
            entry = TlbEntry(vpn & ~0x3FF, pn & ~0x3FF, None, writable, user_ok,
                             dirty, w.global_ and self.pge, True)
        else:
            entry = TlbEntry(vpn, pn, page, writable, user_ok, dirty,
                             w.global_ and self.pge)
        tlb.insert(entry)
        self.tlb_fills += 1
        if hooks and self.on_fill is not None:
            self.on_fill(entry, fetch)
        self._fill_fast(vpn, pn, page, writable, user_ok, dirty, fetch)
        return page, pn

    def wrote_bytes(self, pn: int, lo: int, hi: int) -> None:
        """Bytes ``lo`` to ``hi`` of page ``pn`` were written: its translated
        code is stale if it was read from any of them."""
        blocks = self.code.get(pn)
        if blocks:
            marked = self.code_bytes.get(pn)
            if marked is None or marked.find(1, lo, hi) >= 0:
                self.code_gone(pn, blocks)

    def code_gone(self, pn: int, blocks: dict) -> None:
        """Page ``pn``'s translated code is stale: its blocks go, and a
        block running now stops after the instruction that stored
        (``CodeWritten``: its ``_smc`` check)."""
        blocks.clear()
        self.code_bytes.pop(pn, None)
        self.env["_smc"] = True

    def mark_code(self, pn: int, lo: int, hi: int) -> None:
        """Translated code was read from bytes ``lo`` to ``hi`` of page ``pn``."""
        marked = self.code_bytes.get(pn)
        if marked is None:
            marked = self.code_bytes[pn] = bytearray(PAGE_SIZE)
        marked[lo:hi] = b"\x01" * (hi - lo)

    def _fill_fast(self, vpn, pn, page, writable, user_ok, dirty, fetch) -> None:
        user = self.user
        if user and not user_ok:
            return
        if fetch:
            blocks = self.code.get(pn)
            if blocks is None:
                blocks = self.code[pn] = {}
            self.ifast[vpn] = blocks
            return
        self.rfast[vpn] = page
        if dirty and (writable or (not user and not self.wp)):
            if self.code.get(pn):
                self.cwfast[vpn] = (page, pn)
            else:
                self.wfast[vpn] = page

    def _wrote(self, pn: int) -> None:
        blocks = self.code.get(pn)
        if blocks:
            self.code_gone(pn, blocks)

    # --- slow data accesses -----------------------------------------------
    def read(self, va: int, size: int, counted: bool = True, fetch: bool = False) -> int:
        """Read ``size`` (1, 2 or 4) bytes at ``va``; pages translated lowest first."""
        va &= 0xFFFFFFFF
        off = va & PAGE_MASK
        if counted and not fetch and off + size <= 4096:
            page = self.rfast.get(va >> 12)
            if page is not None:        # (translate's TLB hit, as the hit path has it)
                self._count_hit(va >> 12)
                return int.from_bytes(page[off:off + size], "little")
        page, _ = self.translate(va, False, fetch, counted)
        if off + size <= 4096:
            return int.from_bytes(page[off:off + size], "little")
        first = 4096 - off
        va2 = (va + first) & 0xFFFFFFFF
        page2, _ = self.translate(va2, False, fetch)
        return int.from_bytes(bytes(page[off:]) + bytes(page2[:size - first]), "little")

    def write(self, va: int, size: int, value: int, counted: bool = True) -> None:
        """Write ``size`` bytes at ``va``: all pages translated before any byte
        is stored (all-or-nothing)."""
        va &= 0xFFFFFFFF
        off = va & PAGE_MASK
        if off + size <= 4096:
            vpn = va >> 12
            page = self.wfast.get(vpn) if counted else None
            if page is not None:        # (no code on the page: see _fill_fast)
                self._count_hit(vpn)
                _put(page, off, size, value)
                return
            held = self.cwfast.get(vpn)
            if held is not None:        # code on the page: is it written?
                marked = self.code_bytes.get(held[1])
                if marked is not None and marked.find(1, off, off + size) < 0:
                    self._count_hit(vpn, counted)
                    _put(held[0], off, size, value)
                    return
        page, pn = self.translate(va, True, False, counted)
        if off + size <= 4096:
            _put(page, off, size, value)
            blocks = self.code.get(pn)          # (wrote_bytes, inline)
            if blocks:
                marked = self.code_bytes.get(pn)
                if marked is None or marked.find(1, off, off + size) >= 0:
                    self.code_gone(pn, blocks)
            return
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        first = 4096 - off
        page2, pn2 = self.translate((va + first) & 0xFFFFFFFF, True, False)
        page[off:] = data[:first]
        page2[:size - first] = data[first:]
        self._wrote(pn)
        self._wrote(pn2)

    def check_write(self, va: int) -> None:
        """Translate ``va`` for a write without writing (raises #PF): a
        counted lookup, answered by the fast write map when it can be."""
        va &= 0xFFFFFFFF
        if va >> 12 in self.wfast:
            self._count_hit(va >> 12)
        else:
            self.translate(va, True)

    def _count_hit(self, vpn: int, counted: bool = True) -> None:
        """An access that the fast maps answer: what ``translate`` does on a
        TLB hit (the lookup counted, unless the caller counts it, and, LRU,
        the use told)."""
        if self.paging:
            tlb = self.dtlb
            if counted:
                tlb.lookups += 1
            if vpn != tlb.recent:
                tlb.touch(vpn)

    def fetch_byte(self, va: int) -> int:
        """One instruction byte (the translator's decoder reads through this)."""
        va &= 0xFFFFFFFF
        page, _ = self.translate(va, False, True, counted=False)
        return page[va & PAGE_MASK]

    # --- the hit path -------------------------------------------------------
    def _bind_hit_path(self) -> None:
        """Paging off: nothing to tell the TLB.  Paging on: tell it of uses
        when its policy is LRU."""
        lru = self.dtlb.policy == "lru" and self.paging
        self.env.update(self._paths[lru])
        self.rd32, self.wr32 = self.env["rd32"], self.env["wr32"]
        self.rd8, self.wr8 = self.env["rd8"], self.env["wr8"]

    # --- statistics -------------------------------------------------------
    def stats(self) -> dict:
        out = {"walks": self.walks, "walk_refs": self.walk_refs,
               "page_faults": self.page_faults, "tlb_fills": self.tlb_fills}
        if hasattr(self.walker, "stats"):
            out["nested"] = self.walker.stats()
        if self.itlb is self.dtlb:
            out["tlb"] = self.itlb.stats()
        else:
            out["itlb"] = self.itlb.stats()
            out["dtlb"] = self.dtlb.stats()
        return out
