"""The TLB: a set-associative cache of va -> physical-page translations.

Parameters (each a command-line option of ``emu run``):

    entries   total entries for 4 KiB pages      --tlb-entries (default 64)
    ways      associativity; ways == entries is fully associative
                                                 --tlb-ways (default 4)
    policy    replacement within a set: lru, fifo, random (seeded)
                                                 --tlb-policy (default lru)
    large     entries for 4 MiB pages, fully associative, same policy
                                                 --tlb-large (default 8)

A 4 MiB page takes ONE large entry, whatever part of it is used: that is
the reach large pages buy.  (Under shadow paging the hardware walks 4 KiB
shadow entries, so a guest's 4 MiB pages take 4 KiB entries: the reach is
lost, as it is on real VMMs that back guest large pages with small ones.)

The machine has a split TLB by default: an instruction TLB (ITLB) and a data
TLB (DTLB) of the same geometry, as x86 cores have; ``--tlb-kind unified``
makes one TLB serve both.  Each entry caches what the walk found: the frame,
the combined R/W and U/S rights, the D bit of the mapping entry and whether
the translation is global (G under CR4.PGE).

Counting: ``lookups`` counts every translation the TLB was asked for;
``misses`` counts each miss once (a lookup repeated after the fault it caused
was handled is not a second miss, see ``Mmu``); ``hits = lookups - misses``.
The MMU keeps both counts: its hit path does not call into this class, it
counts lookups in bulk per translated block and tells the TLB about uses
only where the policy needs them (LRU).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

POLICIES = ("lru", "fifo", "random")


@dataclass(slots=True)
class TlbEntry:
    """One cached translation."""

    vpn: int          # virtual page number (va >> 12); a large entry: its first vpn
    pn: int           # physical page number it maps to (ppn, or mpn when virtualized)
    page: bytearray | None  # the page's bytes (None for a large entry: 1024 pages)
    writable: bool    # R/W=1 at every level
    user: bool        # U/S=1 at every level
    dirty: bool       # D of the mapping entry (a write through a clean entry re-walks)
    global_: bool     # G=1 in the mapping entry and CR4.PGE=1: survives CR3 loads
    large: bool = False  # maps a whole 4 MiB page (vpn and pn 1024-aligned)
    # Detached (a VMM's host took the page): the guest page the entry stands
    # for; ``pn`` is -1 and ``page`` None until the page is back (``Mmu.detach_pn``).
    gpn: int | None = None


class Tlb:
    """A set-associative TLB with a replacement policy and statistics."""

    STATS = {
        "lookups": "translations asked for",
        "hits": "lookups answered from the TLB",
        "misses": "lookups that needed a page walk (each counted once)",
        "evictions": "valid entries replaced to make room",
        "flushes": "whole-TLB flushes (CR3 loads)",
        "invlpg": "single-page invalidations",
    }

    def __init__(self, entries: int = 64, ways: int = 4, policy: str = "lru",
                 seed: int = 0, name: str = "tlb", large: int = 8):
        if entries < 1 or ways < 1 or entries % ways:
            raise ValueError(f"{name}: entries ({entries}) must be a positive "
                             f"multiple of ways ({ways})")
        nsets = entries // ways
        if nsets & (nsets - 1):
            raise ValueError(f"{name}: entries/ways ({nsets}) must be a power of two")
        if large < 1:
            raise ValueError(f"{name}: large entries ({large}) must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"{name}: policy must be one of {', '.join(POLICIES)}")
        self.name = name
        self.entries = entries
        self.ways = ways
        self.policy = policy
        self.nsets = nsets
        self.set_mask = nsets - 1
        self.sets: list[OrderedDict[int, TlbEntry]] = [OrderedDict() for _ in range(nsets)]
        self.large_entries = large
        self.large: OrderedDict[int, TlbEntry] = OrderedDict()   # keyed by vpn >> 10
        # (only the random policy draws: the others need no generator)
        self.rng = random.Random(seed) if policy == "random" else None
        self.lookups = 0
        self.misses = 0
        self.evictions = 0
        self.flushes = 0
        self.invlpgs = 0
        # A vpn that ``touch`` would leave where it is (the most recently
        # used of its set already), or -1: the MMU's hit path skips the call.
        self.recent = -1
        # Called with each entry that leaves the TLB (eviction, flush, invlpg).
        self.on_drop = None
        # Called instead, once, when a flush empties the whole TLB.
        self.on_flush = None

    # --- the hardware operations ----------------------------------------
    def lookup(self, vpn: int) -> TlbEntry | None:
        """The entry for ``vpn``, or None (the MMU counts the lookup)."""
        s = self.sets[vpn & self.set_mask]
        e = s.get(vpn)
        if e is not None:
            if self.policy == "lru":
                s.move_to_end(vpn)
                self.recent = vpn
            return e
        if self.large:
            e = self.large.get(vpn >> 10)
            if e is not None and self.policy == "lru":
                self.large.move_to_end(vpn >> 10)
                self.recent = vpn
        return e

    def probe(self, vpn: int) -> TlbEntry | None:
        """The entry for ``vpn`` without counting or touching (for views)."""
        e = self.sets[vpn & self.set_mask].get(vpn)
        if e is None and self.large:
            e = self.large.get(vpn >> 10)
        return e

    def probe_each(self, vpns) -> list[TlbEntry | None]:
        """``probe`` of each of ``vpns``, in order (a view of many pages at
        once: the host's check of what a VM's hardware holds)."""
        return list(map(self.probe, vpns))

    def touch(self, vpn: int) -> None:
        """Record a use of ``vpn`` made on the MMU's hit path (LRU only:
        the other policies ignore uses)."""
        if self.policy != "lru":
            return
        s = self.sets[vpn & self.set_mask]
        if vpn in s:
            s.move_to_end(vpn)
        else:
            self.large.move_to_end(vpn >> 10)
        self.recent = vpn

    def insert(self, entry: TlbEntry) -> TlbEntry | None:
        """Cache ``entry``; returns the entry it evicted, if any.  (One
        body for both kinds of entry, without helper calls: every miss of
        every guest comes here.)"""
        if entry.large:
            s, key, ways = self.large, entry.vpn >> 10, self.large_entries
        else:
            key = entry.vpn
            s, ways = self.sets[key & self.set_mask], self.ways
        self.recent = -1
        victim = None
        old = s.pop(key, None)
        if old is not None:
            if self.on_drop is not None:
                self.on_drop(old)
        elif len(s) >= ways:
            if self.policy == "random":
                victim = s.pop(list(s)[self.rng.randrange(len(s))])
            else:   # lru and fifo both evict the front: least recent / oldest
                victim = s.popitem(last=False)[1]
            self.evictions += 1
            if self.on_drop is not None:
                self.on_drop(victim)
        s[key] = entry
        return victim

    def flush(self, keep_global: bool = True) -> None:
        """Drop every entry (a CR3 load); global ones stay if ``keep_global``."""
        self.flushes += 1
        self.recent = -1
        every = (*self.sets, self.large)
        if self.on_flush is not None and not (
                keep_global and any(e.global_ for s in every for e in s.values())):
            for s in every:
                s.clear()
            self.on_flush()
            return
        for s in every:
            for vpn, e in list(s.items()):
                if not (keep_global and e.global_):
                    del s[vpn]
                    self._dropped(e)

    def invlpg(self, vpn: int) -> None:
        """Drop the entry for ``vpn`` (global or not)."""
        self.invlpgs += 1
        self.recent = -1
        e = self.sets[vpn & self.set_mask].pop(vpn, None)
        if e is not None:
            self._dropped(e)
        e = self.large.pop(vpn >> 10, None)
        if e is not None:
            self._dropped(e)

    def _dropped(self, e: TlbEntry) -> None:
        if self.on_drop is not None:
            self.on_drop(e)

    # --- views -----------------------------------------------------------
    def valid_entries(self) -> list[TlbEntry]:
        """Every valid entry, set by set, in replacement order."""
        return [e for s in (*self.sets, self.large) for e in s.values()]

    def entries_to(self, pn: int) -> list[TlbEntry]:
        """The valid entries that translate to physical page ``pn``, in the
        order of ``valid_entries`` (a 4 KiB entry maps its ``pn``, a large
        one the 1,024 pages from its ``pn``; the host's reclaim asks this
        of every page it takes)."""
        out = [e for s in self.sets for e in s.values() if e.pn == pn]
        if self.large:
            out += [e for e in self.large.values() if e.pn <= pn < e.pn + 1024]
        return out

    def stats(self) -> dict[str, int]:
        return {"entries": self.entries, "ways": self.ways, "large_entries": self.large_entries,
                "lookups": self.lookups, "hits": self.lookups - self.misses,
                "misses": self.misses, "evictions": self.evictions,
                "flushes": self.flushes, "invlpg": self.invlpgs}
