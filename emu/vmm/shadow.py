"""Shadow page tables: the tables the hardware really walks under shadow paging.

Shadow pages live in machine memory owned by the VMM and are keyed by
``(guest table ppn, role)``:

    ("pd", gppn)         shadows the guest page directory at gppn (a root)
    ("pt", gppn)         shadows the guest page table at gppn; shared by every
                         spde that points to that guest table
    ("4m", gppn, pdx)    a 4 KiB-page shadow table standing for the 4 MiB
                         guest page mapped by entry pdx of guest PD gppn
    ("phys-pd", 0) and ("phys-pt", i)
                         the identity "physical mode" shadow used while the
                         guest runs with paging off (va = pa, through the PMap)

An spde copies its gpde's R/W and U/S (the hardware combines them with the
spte's, as it does the guest's); an spte maps the mpn the PMap gives for the
gpte's ppn with the gpte's U/S and G, and with R/W only if the gpte allows
writes AND its D bit is already set AND the target page is not a protected
guest page-table page.  So the first write to a clean page exits (the VMM sets
D) and every write to a shadowed guest table exits (a tracing fault).

Coherence policies (``--shadow-policy``), two choices combined:

    trace   every shadowed guest table page stays write-protected; a write to
            it is emulated and the affected shadow entries dropped
    oos     the first write to a shadowed table page unprotects it, drops the
            shadow entries built from it (they refill from the guest's
            entries on demand; the TLB keeps what it holds) and marks it out
            of sync; it is resynced (the entries refilled since dropped) at
            the next CR3 load, and the entry of one va at INVLPG
    cache   on a guest CR3 load keep every shadow, switch roots
    drop    on a guest CR3 load free every shadow and start again

A reverse map (mpn -> sptes that map it) finds every spte mapping a machine
page: to write-protect a page that becomes a shadowed table, and to drop
every mapping of a page the VMM takes back.

Stale translations (trace policies).  The guest may rewrite a gpte without
INVLPG and keep using the old translation from its TLB.  The VMM drops the
spte built from the old gpte, but the hardware TLB keeps the translation, so
reads go on hitting it as they do natively; a write through it to a traced
table page exits, though, and must then go to the old page without a walk
(a TLB hit sets no A/D bit).  So when the spte of a translation the TLB
still caches is dropped, its index keeps a *stale record*: a not-present
entry (the hardware ignores every other bit of it) holding what the TLB
entry holds, in the guest's terms::

    31            12  11  10   9   8   7   6   5   4   3   2   1   0
    +---------------+---+---+---+---+---+---+---+---+---+---+---+---+
    | ppn           |       |STL| G |   | D |           | U | W | 0 |
    +---------------+---+---+---+---+---+---+---+---+---+---+---+---+

W and U the rights combined over both guest levels, D and G those of the
gpte.  The record goes when the guest's TLB would lose the translation
(INVLPG of one of its vas, a CR3 load unless G, a TLB flush) or when an
exit at it shows that the hardware TLB no longer holds it (a read, or a
write its rights refuse).  A write it allows is taken for a hit: the VMM
cannot tell it from the first access after the hardware TLB evicted the
entry.  (A rewritten gpde is not covered: its spde is dropped.)
"""

from __future__ import annotations

from struct import Struct

from ..hw.paging import PTE_A, PTE_D, PTE_G, PTE_P, PTE_U, PTE_W
from .api import VmmError
from .pmap import SHARED_OWNER, VMM_OWNER, MachineMemory, PMap
from .shadow_sync import SRC_4M, OutOfSyncTables

_U32 = Struct("<I")
POLICIES = ("trace-cache", "trace-drop", "oos-cache", "oos-drop")
SPTE_STALE = 0x200                 # (bit 9, ignored by hardware) a stale record, P=0
TABLE_ROLES = ("pd", "pt")         # roles that shadow a guest table page
DIRECTORY_ROLES = ("pd", "phys-pd")  # roles whose entries point to shadow tables


class ShadowPage:
    """One shadow table: a machine page owned by the VMM."""

    __slots__ = ("key", "mpn", "page", "parents", "present", "src")

    def __init__(self, key: tuple, mpn: int, page: bytearray):
        self.key = key
        self.mpn = mpn
        self.page = page
        self.parents: set[tuple[ShadowPage, int]] = set()   # spdes pointing here
        self.present = 0                                      # entries present
        self.src = 0        # a "4m" table: the gpde (SRC_4M bits) it was built from

    @property
    def role(self) -> str:
        return self.key[0]

    def entry(self, idx: int) -> int:
        return _U32.unpack_from(self.page, idx * 4)[0]

    def __repr__(self) -> str:
        return f"ShadowPage({self.key}, mpn={self.mpn:#x})"


class ShadowTables(OutOfSyncTables):
    """Every shadow page of one VM, with its bookkeeping."""

    STATS = {
        "shadow_pages": "shadow pages in use",
        "shadow_pages_peak": "most shadow pages in use at once",
        "shadow_pages_created": "shadow pages ever created",
        "sptes_filled": "shadow entries written by fills",
        "sptes_dropped": "shadow entries dropped to stay coherent",
        "write_protected": "guest table pages write-protected",
        "unsynced": "table pages let out of sync (oos policy)",
        "resyncs": "out-of-sync pages brought back in sync",
        "drops_all": "times every shadow was dropped (drop policy, CR0/CR4 changes)",
        "shrunk": "shadow pages freed because machine memory ran out",
    }

    def __init__(self, machine: MachineMemory, pmap: PMap, policy: str = "trace-cache"):
        if policy not in POLICIES:
            raise ValueError(f"shadow policy must be one of {', '.join(POLICIES)}")
        self.machine = machine
        self.pmap = pmap
        self.policy = policy
        self.tracing = policy.startswith("trace")
        self.cache_roots = policy.endswith("cache")
        self.pages: dict[tuple, ShadowPage] = {}
        self.by_mpn: dict[int, ShadowPage] = {}
        self.tracked: dict[int, set[tuple]] = {}        # guest table ppn -> keys
        self.rmap: dict[int, set[tuple[ShadowPage, int]]] = {}
        self.unsync: set[int] = set()
        # stale records: (shadow page, index) -> the vpns whose TLB entry they stand for
        self.stale: dict[tuple[ShadowPage, int], frozenset[int]] = {}
        # callable(gppn, mpn): the TLB must not keep guest page gppn -- in
        # machine page mpn, or None while it is not resident -- writable
        self.on_protect = None
        self.created = 0
        self.peak = 0
        self.filled = 0
        self.dropped = 0
        self.protected_count = 0
        self.unsynced = 0
        self.resyncs = 0
        self.drops_all = 0
        self.shrunk = 0

    # --- shadow pages ---------------------------------------------------------
    def get(self, key: tuple) -> ShadowPage | None:
        return self.pages.get(key)

    def ensure(self, key: tuple) -> tuple[ShadowPage, bool]:
        """The shadow page for ``key``, created (zeroed) if missing."""
        sp = self.pages.get(key)
        if sp is not None:
            return sp, False
        mpn = self.machine.alloc(VMM_OWNER)
        sp = ShadowPage(key, mpn, self.machine.mem.page(mpn))
        self.pages[key] = sp
        self.by_mpn[mpn] = sp
        self.created += 1
        self.peak = max(self.peak, len(self.pages))
        if key[0] in TABLE_ROLES:
            gppn = key[1]
            first = gppn not in self.tracked
            self.tracked.setdefault(gppn, set()).add(key)
            if first and gppn not in self.unsync:
                self._protect(gppn)
        return sp, True

    def free(self, sp: ShadowPage) -> None:
        """Free a shadow page: drop its entries and every spde pointing to it."""
        if self.pages.get(sp.key) is not sp:
            return
        del self.pages[sp.key]
        del self.by_mpn[sp.mpn]
        self.zap(sp)
        for parent, idx in list(sp.parents):
            self._clear(parent, idx)
        sp.parents.clear()
        if self.stale:
            for ref in [ref for ref in self.stale if ref[0] is sp]:
                del self.stale[ref]
        if sp.key[0] in TABLE_ROLES:
            keys = self.tracked.get(sp.key[1])
            if keys is not None:
                keys.discard(sp.key)
                if not keys:
                    del self.tracked[sp.key[1]]
                    self.unsync.discard(sp.key[1])
        self.machine.free(sp.mpn)

    def drop_all(self) -> int:
        """Free every shadow page (a CR3 load under the drop policy)."""
        n = len(self.pages)
        for sp in list(self.pages.values()):
            if sp.key in self.pages:
                self.free(sp)
        self.rmap.clear()
        self.unsync.clear()
        self.stale.clear()
        self.drops_all += 1
        return n

    def shrink(self, keep, enough) -> int:
        """Machine memory has run out: free shadow pages -- a cache, rebuilt
        from the guest's tables on demand -- oldest first, those no entry
        of a kept root reaches before those it does, until ``enough()``.
        The pages in ``keep`` (the root the hardware walks, and any the VMM
        holds between exits) stay, and so do pages holding stale records
        (they stand for TLB entries: rebuilt, they would not).  A guest
        table page left with no shadow is no longer write-protected.
        Returns the pages freed."""
        reached = set()
        for root in keep:
            if root is not None and root.role in DIRECTORY_ROLES and root.present:
                for idx in range(1024):
                    spde = root.entry(idx)
                    if spde & PTE_P:
                        reached.add(spde >> 12)
        stale = {sp for sp, _ in self.stale}
        order = [sp for sp in self.pages.values() if sp not in keep and sp not in stale]
        order.sort(key=lambda sp: sp.mpn in reached)       # (stable: oldest first)
        freed = 0
        for sp in order:
            if enough():
                break
            if self.pages.get(sp.key) is sp:
                n = len(self.pages)
                self.free(sp)
                freed += n - len(self.pages)
        self.shrunk += freed
        return freed

    # --- entries ----------------------------------------------------------------
    def _write(self, sp: ShadowPage, idx: int, value: int) -> None:
        old = _U32.unpack_from(sp.page, idx * 4)[0]
        _U32.pack_into(sp.page, idx * 4, value)
        sp.present += bool(value & PTE_P) - bool(old & PTE_P)

    def _clear(self, sp: ShadowPage, idx: int) -> int:
        """Make entry ``idx`` not present; returns the old value."""
        old = sp.entry(idx)
        if not old & PTE_P:
            return old
        self._write(sp, idx, 0)
        self.dropped += 1
        target = old >> 12
        if sp.role in DIRECTORY_ROLES:
            child = self.by_mpn.get(target)
            if child is not None:
                child.parents.discard((sp, idx))
                if child.role == "4m":
                    self.free(child)       # private to this spde
        else:
            refs = self.rmap.get(target)
            if refs is not None:
                refs.discard((sp, idx))
                if not refs:
                    del self.rmap[target]
        return old

    def zap(self, sp: ShadowPage) -> int:
        """Drop every entry of ``sp``; returns how many were present."""
        n = 0
        if sp.present:
            for idx in range(1024):
                if sp.entry(idx) & PTE_P:
                    self._clear(sp, idx)
                    n += 1
        return n

    def link(self, sp_pd: ShadowPage, idx: int, child: ShadowPage, gpde: int) -> None:
        """spde[idx] -> child, with the gpde's R/W and U/S."""
        value = (child.mpn << 12) | PTE_P | (gpde & (PTE_W | PTE_U))
        old = sp_pd.entry(idx)
        if old & ~(PTE_A | PTE_D) == value:
            return          # (the hardware may have set A in it)
        if old & PTE_P and old >> 12 == child.mpn:
            self._write(sp_pd, idx, value)      # same table, new rights
        else:
            self._clear(sp_pd, idx)
            self._write(sp_pd, idx, value)
            child.parents.add((sp_pd, idx))
        self.filled += 1

    def set_spte(self, sp: ShadowPage, idx: int, mpn: int, gpte: int,
                 gppn: int, writable: bool, force: bool = False) -> int:
        """spte[idx] -> mpn.  ``gpte`` gives U/S and G; writes are allowed only
        if ``writable`` (the guest allows them and D is set) and the target is
        not a protected guest table -- unless ``force`` (the VMM lets one
        instruction through while it emulates)."""
        if not self.pmap.owns(mpn):
            raise VmmError(isolation_message(self.pmap, mpn, "spte"))
        value = (mpn << 12) | PTE_P | (gpte & (PTE_U | PTE_G))
        if force or (writable and not self.is_protected(gppn)):
            value |= PTE_W
        self._clear(sp, idx)
        if self.stale:
            self.stale.pop((sp, idx), None)     # the fill replaces a stale record
        self._write(sp, idx, value)
        self.rmap.setdefault(mpn, set()).add((sp, idx))
        self.filled += 1
        return value

    @staticmethod
    def src_4m(gpde: int) -> int:
        """What a "4m" shadow table copies from its gpde (its ``src``)."""
        return gpde & SRC_4M

    def test_and_clear_accessed(self, sp: ShadowPage, idx: int) -> bool:
        """Did the hardware set A in spte ``idx`` since it was last cleared?
        (Cleared now: the host's CLOCK reads it.)"""
        e = sp.entry(idx)
        if e & PTE_A:
            sp.page[idx * 4] = e & ~PTE_A & 0xFF
            return True
        return False

    def clear_write(self, sp: ShadowPage, idx: int, mpn: int) -> None:
        """Make entry ``idx`` read-only if it still maps ``mpn``."""
        e = sp.entry(idx)
        if e & PTE_P and e >> 12 == mpn and e & PTE_W:
            _U32.pack_into(sp.page, idx * 4, e & ~PTE_W)

    def drop_entry(self, sp: ShadowPage, idx: int) -> int:
        """Make entry ``idx`` not present (a stale record goes too); returns
        the old value."""
        if self.stale:
            self.stale.pop((sp, idx), None)
        old = self._clear(sp, idx)
        if not old & PTE_P and old:
            self._write(sp, idx, 0)
        return old

    def drop_mappings(self, mpn: int) -> int:
        """Drop every spte that maps machine page ``mpn`` (reverse map)."""
        refs = self.sptes_mapping(mpn)
        for sp, idx in refs:
            self._clear(sp, idx)
        return len(refs)

    # --- write protection of guest table pages -----------------------------------
    def is_protected(self, gppn: int) -> bool:
        return gppn in self.tracked and gppn not in self.unsync

    def _protect(self, gppn: int) -> None:
        """Write-protect every spte that maps the guest table page ``gppn``."""
        mpn = self.pmap.mpn_of.get(gppn)
        self.protected_count += 1
        if mpn is not None:
            for sp, idx in self.rmap.get(mpn, ()):
                e = sp.entry(idx)
                if e & PTE_W:
                    _U32.pack_into(sp.page, idx * 4, e & ~PTE_W)
        # (the TLB too when the page is not resident: an entry the host
        # detached from it still stands for it, and may be reattached)
        if self.on_protect is not None:
            self.on_protect(gppn, mpn)

    # --- stale records (see the module doc) --------------------------------------
    def keep_stale(self, sp: ShadowPage, idx: int, record: int, vpns) -> None:
        """Leave the stale ``record`` (P=0, SPTE_STALE) at not-present entry
        ``idx``: the TLB entries of ``vpns`` still hold its translation."""
        assert not record & PTE_P and record & SPTE_STALE and not sp.entry(idx) & PTE_P
        _U32.pack_into(sp.page, idx * 4, record)
        self.stale[(sp, idx)] = frozenset(vpns)

    def stale_record(self, sp: ShadowPage, idx: int, vpn: int) -> int | None:
        """The stale record at ``idx`` if it stands for ``vpn``'s TLB entry."""
        vpns = self.stale.get((sp, idx))
        if vpns is None or vpn not in vpns:
            return None
        return sp.entry(idx)

    def forget_stale(self, vpn: int | None = None, keep_global: bool = False) -> int:
        """The guest's TLB lost the translations: of ``vpn`` (INVLPG), or
        all (a flush; a CR3 load with ``keep_global`` keeps records with
        G).  Their records go; returns how many."""
        gone = [ref for ref, vpns in self.stale.items()
                if (vpn is None or vpn in vpns)
                and not (keep_global and ref[0].entry(ref[1]) & PTE_G)]
        for sp, idx in gone:
            del self.stale[(sp, idx)]
            _U32.pack_into(sp.page, idx * 4, 0)
        return len(gone)

    def sptes_mapping(self, mpn: int) -> list[tuple[ShadowPage, int]]:
        return sorted(self.rmap.get(mpn, ()), key=lambda r: (r[0].mpn, r[1]))

    def stats(self) -> dict:
        return {"shadow_pages": len(self.pages), "shadow_pages_peak": self.peak,
                "shadow_pages_created": self.created, "sptes_filled": self.filled,
                "sptes_dropped": self.dropped, "write_protected": self.protected_count,
                "unsynced": self.unsynced, "resyncs": self.resyncs,
                "drops_all": self.drops_all, "shrunk": self.shrunk}


def isolation_message(pmap: PMap, mpn: int, what: str) -> str:
    """Why ``pmap``'s VM may not map machine page ``mpn``, in one line."""
    machine = pmap.machine
    owner = machine.owner.get(mpn)
    state = machine.state_of(mpn) if hasattr(machine, "state_of") else None
    if owner is None:
        whose = "a free page" if 0 < mpn < machine.npages else "outside machine memory"
    elif owner == VMM_OWNER:
        whose = "a page of the VMM's own tables"
    elif owner == SHARED_OWNER:
        whose = "a shared page no guest page of this VM is bound to"
    elif owner == pmap.name:
        whose = f"a page of this VM that is {state} (not mappable now)"
    else:
        whose = f"a page the PMap gives to {owner}"
    return f"isolation: {what} maps mpn {mpn:#x}, which is {whose}"
