"""A reference model of 32-bit paging and of what a TLB may hold, written
from the Intel SDM (vol. 3A, chapter 4) independently of ``emu.hw``.

``Model`` walks guest-physical memory the way the SDM describes (CR4.PSE=1):
which access faults, with which error code, which entries would fix it.

``TlbRules`` says, for each page the generated guests touch, whether a
translation the TLB or a paging-structure cache may still hold can differ
from what the tables say now (the page is *stale*), and which translations
those could be.  It follows the architecture's rules, not one TLB's
behaviour, so a guest that never uses a stale translation gives the same
result with a TLB of any size, associativity or replacement policy:

* a translation may be cached once every entry on its path is present
  (and a 4 MiB PDE has no reserved bit set), at any time, even without an
  access; a PDE that points to a page table may be cached on its own (the
  PDE cache) while the PTE below it is not present;
* so a write to an entry makes stale every page whose cacheable path
  (the present prefix of its walk) contains that entry;
* these events drop cached translations (SDM 4.10.4.1, and this machine's
  rules in docs/design.md, "Invalidation events"):

      INVLPG va            the TLB entries of va's page, global or not,
                           and every paging-structure cache entry (so a
                           page stale only through a cached PDE is fresh
                           after an INVLPG of any address)
      MOV to CR3           every non-global TLB entry (a CR3 load of the
                           same value too) and every paging-structure cache
      MOV to CR4 (PGE,     everything, global entries included
      PSE changes)
      MOV to CR0 (PG,      everything, global entries included
      WP changes)
      #PF at va            the TLB entries of va's page and the
                           paging-structure cache entries used for va

  The SDM itself lists CR0.PG 1->0, CR4.PGE and CR4.PAE changes as full
  flushes; this machine also flushes on CR4.PSE and CR0.WP changes (and
  PG 0->1), and the guests treat those as full flushes too;
* a global translation (G=1 in the mapping entry, CR4.PGE=1) survives a
  CR3 load: afterwards its page may translate with the previous address
  space's mapping, so it is stale in the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

MEM_MIB = 12
P, W, U, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
RSVD_4M = 1 << 21
PF_P, PF_W, PF_U, PF_RSVD = 1, 2, 4, 8


@dataclass
class Walk:
    fault: bool
    ec: int = 0
    pa: int | None = None
    path: tuple[int, ...] = ()          # physical addresses of the entries read
    fixes: tuple[tuple[int, int, int], ...] = ()   # (entry pa, and, or) that allow it
    mapping: int | None = None          # the mapping entry (PTE, or 4 MiB PDE)


@dataclass(frozen=True)
class Lookup:
    """What a TLB or paging-structure cache may hold for one va, now."""

    path: tuple[tuple[int, int], ...]   # (entry pa, value) of every entry the walk reads
    cacheable: int                      # how many of them (from the top) may be cached
    translation: tuple[int, bool, bool] | None   # (page number, W, U) or None
    global_: bool = False               # the mapping entry has G


def rights_allow(writable: bool, user_ok: bool, write: bool, user: bool, wp: bool) -> bool:
    """May cached rights serve this access (SDM 4.6)?"""
    if user and not user_ok:
        return False
    return not write or writable or (not user and not wp)


class Model:
    """Guest-physical memory and 32-bit paging, by the SDM."""

    def __init__(self, pages: dict[int, bytearray]):
        self.pages = pages

    def page(self, pn: int) -> bytearray:
        if pn not in self.pages:
            self.pages[pn] = bytearray(4096)
        return self.pages[pn]

    def rd32(self, pa: int) -> int:
        assert pa < MEM_MIB << 20, f"the model walked outside RAM at pa {pa:#x}"
        return int.from_bytes(self.page(pa >> 12)[pa & 0xFFF:(pa & 0xFFF) + 4], "little")

    def write(self, pa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.page((pa + i) >> 12)[(pa + i) & 0xFFF] = b

    def walk(self, cr3: int, va: int, write: bool, user: bool, wp: bool,
             pde: int | None = None) -> Walk:
        """The walk of one access.  ``pde``: use this PDE value instead of
        the one in memory (a paging-structure cache holding an old one)."""
        ec = (PF_W if write else 0) | (PF_U if user else 0)
        need = (U if user else 0) | (W if write and (user or wp) else 0)
        pde_pa = (cr3 & 0xFFFFF000) | (va >> 22) << 2
        if pde is None:
            pde = self.rd32(pde_pa)
        if not pde & P:
            return Walk(True, ec, path=(pde_pa,), fixes=((pde_pa, ~0, P),))
        if pde & PS:
            if pde & RSVD_4M:
                return Walk(True, ec | PF_P | PF_RSVD, path=(pde_pa,),
                            fixes=((pde_pa, ~RSVD_4M, 0),))
            if pde & need != need:
                return Walk(True, ec | PF_P, path=(pde_pa,), fixes=((pde_pa, ~0, need),))
            return Walk(False, pa=(pde & 0xFFC00000) | (va & 0x3FFFFF), path=(pde_pa,),
                        mapping=pde)
        pte_pa = (pde & 0xFFFFF000) | ((va >> 12) & 0x3FF) << 2
        pte = self.rd32(pte_pa)
        path = (pde_pa, pte_pa)
        if not pte & P:
            return Walk(True, ec, path=path, fixes=((pte_pa, ~0, P),))
        if pde & pte & need != need:
            fixes = tuple((e_pa, ~0, need) for e_pa, e in ((pde_pa, pde), (pte_pa, pte))
                          if e & need != need)
            return Walk(True, ec | PF_P, path=path, fixes=fixes)
        return Walk(False, pa=(pte & 0xFFFFF000) | (va & 0xFFF), path=path, mapping=pte)

    def lookup(self, cr3: int, va: int) -> Lookup:
        """The entries of ``va``'s walk and how much of it may be cached."""
        pde_pa = (cr3 & 0xFFFFF000) | (va >> 22) << 2
        pde = self.rd32(pde_pa)
        if not pde & P:
            return Lookup(((pde_pa, pde),), 0, None)
        if pde & PS:
            if pde & RSVD_4M:
                return Lookup(((pde_pa, pde),), 0, None)
            pn = ((pde & 0xFFC00000) | (va & 0x3FF000)) >> 12
            return Lookup(((pde_pa, pde),), 1, (pn, bool(pde & W), bool(pde & U)),
                          bool(pde & G))
        pte_pa = (pde & 0xFFFFF000) | ((va >> 12) & 0x3FF) << 2
        pte = self.rd32(pte_pa)
        path = ((pde_pa, pde), (pte_pa, pte))
        if not pte & P:
            return Lookup(path, 1, None)
        rights = pde & pte
        return Lookup(path, 2, (pte >> 12, bool(rights & W), bool(rights & U)),
                      bool(pte & G))


class TlbRules:
    """What the TLBs and paging-structure caches may hold for each page of
    ``vpns`` (see the module doc).  The owner calls ``before_write`` before
    it changes memory, and the event methods when the guest invalidates."""

    def __init__(self, model: Model, vpns: tuple[int, ...]):
        self.model = model
        self.vpns = vpns
        self.stale: set[int] = set()            # may translate otherwise than the tables
        self.maybe_global: set[int] = set()     # may hold a global TLB entry
        self.old: dict[int, set] = {}           # vpn -> translations it may still use
        self.old_pdes: dict[int, set[int]] = {}  # vpn -> PDEs a PDE cache may hold

    def _keep(self, vpn: int, lk: Lookup) -> None:
        """``vpn`` may go on using what ``lk`` found: remember it."""
        if lk.translation is not None:
            self.old.setdefault(vpn, set()).add(lk.translation)
        if lk.cacheable and not lk.path[0][1] & PS:
            self.old_pdes.setdefault(vpn, set()).add(lk.path[0][1])
        self.stale.add(vpn)

    def before_write(self, cr3: int, entry_pas: set[int]) -> None:
        """Memory at these dword addresses is about to change."""
        for vpn in self.vpns:
            lk = self.model.lookup(cr3, vpn << 12)
            if any(pa in entry_pas for pa, _ in lk.path[:lk.cacheable]):
                self._keep(vpn, lk)

    def refresh_globals(self, cr3: int, pge: bool) -> None:
        """Every page mapped global now may get a global TLB entry."""
        if pge:
            for vpn in self.vpns:
                lk = self.model.lookup(cr3, vpn << 12)
                if lk.translation is not None and lk.global_:
                    self.maybe_global.add(vpn)

    def _forget(self, vpn: int) -> None:
        self.stale.discard(vpn)
        self.maybe_global.discard(vpn)
        self.old.pop(vpn, None)
        self.old_pdes.pop(vpn, None)

    # --- the invalidation events ------------------------------------------------------
    def invlpg(self, vpn: int, cr3: int, pge: bool) -> None:
        """INVLPG of ``vpn``, or of a page no test page shares (vpn -1)."""
        self._forget(vpn)
        self.old_pdes.clear()           # INVLPG empties every paging-structure cache:
        for v in list(self.stale):      # a page stale through them alone is fresh
            if not self.old.get(v) and v not in self.maybe_global:
                self._forget(v)
        self.refresh_globals(cr3, pge)

    def page_fault(self, vpn: int, cr3: int, pge: bool) -> None:
        self._forget(vpn)
        self.refresh_globals(cr3, pge)

    def load_cr3(self, old_cr3: int, new_cr3: int, pge: bool) -> None:
        for vpn in self.vpns:
            if vpn in self.maybe_global:
                # the global entry of the old space may answer in the new one
                self._keep(vpn, self.model.lookup(old_cr3, vpn << 12))
            else:
                self._forget(vpn)
        self.old_pdes.clear()
        self.refresh_globals(new_cr3, pge)

    def flush_all(self, cr3: int, pge: bool) -> None:
        self.stale.clear()
        self.maybe_global.clear()
        self.old.clear()
        self.old_pdes.clear()
        self.refresh_globals(cr3, pge)

    # --- a #PF as the event -------------------------------------------------------------
    def sure_fault(self, cr3: int, va: int, write: bool, user: bool, wp: bool) -> int | None:
        """The error code of the #PF this access takes whatever the TLB and
        the paging-structure caches hold for its page, or None when a cached
        translation could let it through or fault differently."""
        vpn = va >> 12
        now = self.model.walk(cr3, va, write, user, wp)
        if not now.fault:
            return None
        tlb_ec = PF_P | (PF_W if write else 0) | (PF_U if user else 0)
        for _, w, u in self.old.get(vpn, ()):
            if rights_allow(w, u, write, user, wp) or now.ec != tlb_ec:
                return None
        for pde in self.old_pdes.get(vpn, ()):
            then = self.model.walk(cr3, va, write, user, wp, pde=pde)
            if not then.fault or then.ec != now.ec:
                return None
        return now.ec
