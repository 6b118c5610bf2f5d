"""The TLB component alone: geometry, set indexing, replacement, flushes.

Entries are built by hand; nothing here walks a page table.  The MMU counts
lookups and misses itself (see test_mmu.py), so here ``lookups``/``misses``
only appear in ``stats()``; the TLB's own counters are evictions, flushes
and invlpg.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.hw.tlb import POLICIES, Tlb, TlbEntry


def entry(vpn: int, *, global_: bool = False, pn: int | None = None,
          writable: bool = True, user: bool = False, dirty: bool = False) -> TlbEntry:
    """A translation of ``vpn`` (to page ``pn``, by default vpn + 0x1000)."""
    return TlbEntry(vpn, vpn + 0x1000 if pn is None else pn, bytearray(4096),
                    writable, user, dirty, global_)


def cached(tlb: Tlb) -> list[int]:
    """The vpns in the TLB, set by set, in replacement order (victim first)."""
    return [e.vpn for e in tlb.valid_entries()]


COUNTERS = ("entries", "ways", "lookups", "hits", "misses", "evictions", "flushes", "invlpg")


def counters(tlb: Tlb) -> dict:
    """``stats()`` restricted to the 4 KiB geometry and the counters."""
    st = tlb.stats()
    return {k: st[k] for k in COUNTERS}


def fill(tlb: Tlb, vpns) -> list[int | None]:
    """Insert each vpn; the list of evicted vpns (None where nothing was)."""
    out = []
    for vpn in vpns:
        victim = tlb.insert(entry(vpn))
        out.append(None if victim is None else victim.vpn)
    return out


# --- geometry -------------------------------------------------------------------

@pytest.mark.parametrize("entries, ways, match", [
    (0, 1, r"itlb: entries \(0\) must be a positive multiple of ways \(1\)"),
    (-4, 4, r"itlb: entries \(-4\) must be a positive multiple of ways \(4\)"),
    (4, 0, r"itlb: entries \(4\) must be a positive multiple of ways \(0\)"),
    (6, 4, r"itlb: entries \(6\) must be a positive multiple of ways \(4\)"),
    (12, 4, r"itlb: entries/ways \(3\) must be a power of two"),
    (24, 1, r"itlb: entries/ways \(24\) must be a power of two"),
])
def test_bad_geometry_is_refused_with_the_tlbs_name(entries, ways, match):
    with pytest.raises(ValueError, match=match):
        Tlb(entries, ways, "lru", name="itlb")


def test_unknown_policy_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"dtlb: policy must be one of lru, fifo, random"):
        Tlb(8, 2, "plru", name="dtlb")


@pytest.mark.parametrize("entries, ways, nsets", [
    (1, 1, 1), (64, 4, 16), (64, 64, 1), (16, 1, 16), (8, 2, 4)])
def test_good_geometry_gives_entries_over_ways_sets(entries, ways, nsets):
    t = Tlb(entries, ways)
    assert (t.nsets, t.set_mask, len(t.sets)) == (nsets, nsets - 1, nsets)
    assert counters(t) == {"entries": entries, "ways": ways, "lookups": 0, "hits": 0,
                           "misses": 0, "evictions": 0, "flushes": 0, "invlpg": 0}


def test_defaults_are_64_entries_4_ways_lru():
    t = Tlb()
    assert (t.entries, t.ways, t.policy, t.nsets, t.name) == (64, 4, "lru", 16, "tlb")
    assert POLICIES == ("lru", "fifo", "random")


# --- set indexing -----------------------------------------------------------------

def test_set_index_is_the_low_bits_of_the_vpn():
    t = Tlb(8, 2)                      # 4 sets: set = vpn & 3
    fill(t, [0x400, 0x401, 0x402, 0x403, 0x405])
    assert [list(s) for s in t.sets] == [[0x400], [0x401, 0x405], [0x402], [0x403]]


def test_a_full_set_evicts_only_from_itself():
    t = Tlb(8, 2)                      # set 1 holds vpns 1, 5, 9, 13 ...
    assert fill(t, [0, 2, 3, 1, 5]) == [None] * 5
    assert fill(t, [9]) == [1]         # set 1 was full: its oldest goes
    assert cached(t) == [0, 5, 9, 2, 3]
    assert t.evictions == 1


def test_lookup_and_probe_find_only_the_exact_vpn():
    t = Tlb(8, 2)
    e = entry(5)
    t.insert(e)
    assert t.lookup(5) is e and t.probe(5) is e
    assert t.lookup(1) is None and t.lookup(9) is None   # same set, other vpns
    assert t.probe(4) is None


def test_lookup_counts_nothing_itself():
    # The MMU counts lookups and misses (in bulk on its hit path).
    t = Tlb(8, 2)
    t.insert(entry(1))
    t.lookup(1)
    t.lookup(2)
    assert (t.lookups, t.misses) == (0, 0)


# --- LRU --------------------------------------------------------------------------

def test_lru_evicts_the_least_recently_looked_up_entry():
    t = Tlb(4, 4, "lru")               # one fully associative set
    fill(t, [10, 11, 12, 13])
    t.lookup(10)                       # order of use now 11 12 13 10
    t.lookup(12)                       # 11 13 10 12
    assert fill(t, [14, 15, 16, 17]) == [11, 13, 10, 12]
    assert cached(t) == [14, 15, 16, 17]
    assert t.evictions == 4


def test_lru_touch_counts_as_a_use():
    t = Tlb(4, 4, "lru")
    fill(t, [1, 2, 3, 4])
    t.touch(1)                         # the MMU's hit path: 2 3 4 1
    t.touch(3)                         # 2 4 1 3
    t.lookup(2)                        # 4 1 3 2
    assert fill(t, [5, 6, 7]) == [4, 1, 3]
    assert cached(t) == [2, 5, 6, 7]


def test_lru_probe_is_not_a_use():
    t = Tlb(2, 2, "lru")
    fill(t, [1, 2])
    t.probe(1)
    assert fill(t, [3]) == [1]


def test_lru_victim_sequence_in_a_two_way_set():
    t = Tlb(8, 2, "lru")               # vpns 0, 4, 8, 12 share set 0
    out = []
    for op, vpn in [("i", 0), ("i", 4), ("l", 0), ("i", 8), ("l", 0), ("i", 12),
                    ("l", 12), ("i", 4), ("i", 0)]:
        if op == "i":
            v = t.insert(entry(vpn))
            out.append(v and v.vpn)
        else:
            assert t.lookup(vpn) is not None
    assert out == [None, None, 4, 8, 0, 12]
    assert cached(t) == [4, 0]


# --- FIFO -------------------------------------------------------------------------

def test_fifo_evicts_the_oldest_inserted_regardless_of_use():
    t = Tlb(4, 4, "fifo")
    fill(t, [10, 11, 12, 13])
    for vpn in (10, 10, 11, 10):
        assert t.lookup(vpn) is not None
    assert fill(t, [14, 15, 16, 17]) == [10, 11, 12, 13]
    assert cached(t) == [14, 15, 16, 17]


def test_fifo_victim_sequence_in_a_two_way_set():
    t = Tlb(8, 2, "fifo")              # vpns 1, 5, 9 share set 1
    assert fill(t, [1, 5]) == [None, None]
    t.lookup(1)
    assert fill(t, [9, 1, 5, 9]) == [1, 5, 9, 1]
    assert cached(t) == [5, 9]


def test_fifo_touch_is_not_a_use():
    t = Tlb(2, 2, "fifo")
    fill(t, [1, 2])
    t.touch(1)
    assert fill(t, [3]) == [1]


# --- random -----------------------------------------------------------------------

def _random_victims(seed: int, n: int = 200) -> list[int]:
    t = Tlb(16, 4, "random", seed=seed)     # 4 sets of 4
    victims = []
    for vpn in range(n):
        v = t.insert(entry(vpn))
        if v is not None:
            assert v.vpn & 3 == vpn & 3          # only ever from the vpn's own set
            victims.append(v.vpn)
    assert len(victims) == n - 16
    assert t.evictions == n - 16
    return victims


def test_random_with_a_seed_is_deterministic():
    assert _random_victims(7) == _random_victims(7)


def test_random_with_another_seed_picks_other_victims():
    assert _random_victims(7) != _random_victims(8)


def test_random_evicts_only_within_the_set():
    t = Tlb(8, 2, "random", seed=3)
    fill(t, [0, 1, 2, 3, 4, 5, 6, 7])       # every set full
    before = {s: list(t.sets[s]) for s in range(4)}
    for vpn in (8, 12, 16, 20, 24):         # all set 0
        v = t.insert(entry(vpn))
        assert v is not None and v.vpn % 4 == 0
    assert {s: list(t.sets[s]) for s in (1, 2, 3)} == {s: before[s] for s in (1, 2, 3)}
    assert len(t.sets[0]) == 2


def test_random_victim_is_a_valid_entry_and_the_new_one_stays():
    t = Tlb(4, 4, "random", seed=0)
    fill(t, [1, 2, 3, 4])
    for vpn in range(5, 40):
        inside = set(cached(t))
        v = t.insert(entry(vpn))
        assert v.vpn in inside
        assert set(cached(t)) == inside - {v.vpn} | {vpn}


# --- re-insertion -----------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_reinserting_a_cached_vpn_replaces_it_without_eviction(policy):
    t = Tlb(2, 2, policy)
    fill(t, [1, 2])
    dropped = []
    t.on_drop = dropped.append
    old = t.probe(1)
    new = entry(1, pn=0x777, dirty=True)
    assert t.insert(new) is None
    assert t.probe(1) is new
    assert dropped == [old]                 # the old copy leaves (fast maps follow)
    assert t.evictions == 0
    assert sorted(cached(t)) == [1, 2]


def test_reinsertion_makes_the_entry_the_newest():
    for policy in ("lru", "fifo"):
        t = Tlb(2, 2, policy)
        fill(t, [1, 2])
        t.insert(entry(1, dirty=True))      # a re-walk (D set) refills vpn 1
        assert fill(t, [3]) == [2], policy


# --- flush and invlpg -------------------------------------------------------------

def _mixed() -> Tlb:
    t = Tlb(8, 2)
    for vpn, g in ((0, True), (1, False), (2, False), (3, True), (4, False), (7, True)):
        t.insert(entry(vpn, global_=g))
    return t


def test_flush_keeping_globals_drops_only_non_global_entries():
    t = _mixed()
    dropped = []
    t.on_drop = lambda e: dropped.append(e.vpn)
    t.flush(keep_global=True)
    assert cached(t) == [0, 3, 7]
    assert sorted(dropped) == [1, 2, 4]
    assert (t.flushes, t.evictions, t.invlpgs) == (1, 0, 0)


def test_flush_defaults_to_keeping_globals():
    t = _mixed()
    t.flush()
    assert cached(t) == [0, 3, 7]


def test_flush_without_keeping_globals_drops_everything():
    t = _mixed()
    dropped = []
    t.on_drop = lambda e: dropped.append(e.vpn)
    t.flush(keep_global=False)
    assert cached(t) == []
    assert sorted(dropped) == [0, 1, 2, 3, 4, 7]
    assert (t.flushes, t.evictions) == (1, 0)


def test_every_flush_counts_even_of_an_empty_tlb():
    t = Tlb(4, 2)
    t.flush()
    t.flush(False)
    assert t.stats()["flushes"] == 2


@pytest.mark.parametrize("vpn, global_", [(1, False), (3, True)])
def test_invlpg_drops_one_page_global_or_not(vpn, global_):
    t = _mixed()
    assert t.probe(vpn).global_ is global_
    dropped = []
    t.on_drop = lambda e: dropped.append(e.vpn)
    t.invlpg(vpn)
    assert dropped == [vpn]
    assert t.probe(vpn) is None
    assert sorted(cached(t)) == sorted({0, 1, 2, 3, 4, 7} - {vpn})
    assert (t.invlpgs, t.flushes, t.evictions) == (1, 0, 0)


def test_invlpg_of_an_uncached_page_counts_and_drops_nothing():
    t = _mixed()
    dropped = []
    t.on_drop = dropped.append
    t.invlpg(5)                             # set 1 holds vpn 1, not 5
    assert dropped == []
    assert sorted(cached(t)) == [0, 1, 2, 3, 4, 7]
    assert t.stats()["invlpg"] == 1


def test_on_drop_sees_each_evicted_entry_once():
    t = Tlb(2, 2, "lru")
    dropped = []
    t.on_drop = dropped.append
    es = [entry(v) for v in range(5)]
    for e in es:
        t.insert(e)
    assert dropped == es[:3]


def test_no_on_drop_listener_is_fine():
    t = Tlb(1, 1)
    fill(t, [1, 2])
    t.invlpg(2)
    t.flush()
    assert cached(t) == []


def test_counters_after_a_mixed_sequence():
    t = Tlb(4, 2, "fifo")                   # 2 sets of 2
    fill(t, [0, 1, 2, 3])                   # full, no eviction
    fill(t, [4, 5, 6])                      # 3 evictions (0, 1, 2)
    t.invlpg(3)
    t.invlpg(3)                             # second: nothing left to drop
    t.flush()
    fill(t, [0, 2, 4])                      # set 0: 0 2, then 4 evicts 0
    t.lookups, t.misses = 10, 4             # the MMU's counts
    assert counters(t) == {"entries": 4, "ways": 2, "lookups": 10, "hits": 6,
                           "misses": 4, "evictions": 4, "flushes": 1, "invlpg": 2}


# --- fully associative ------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_fully_associative_holds_any_vpns_until_full(policy):
    t = Tlb(8, 8, policy)
    vpns = [0, 8, 16, 0xFFFFF, 0x400, 0x12345, 64, 7]    # all "set 0" in a 8x1 TLB
    assert fill(t, vpns) == [None] * 8
    assert len(t.sets) == 1 and sorted(cached(t)) == sorted(vpns)
    assert t.evictions == 0
    v = t.insert(entry(0x999))
    assert v is not None and v.vpn in vpns and t.evictions == 1


def test_one_entry_tlb_evicts_on_every_new_vpn():
    t = Tlb(1, 1)
    assert fill(t, [1, 2, 1, 2]) == [None, 1, 2, 1]
    assert t.evictions == 3


# --- 4 MiB pages: one large entry each --------------------------------------------------

def large(vpn: int, pn: int, *, global_: bool = False) -> TlbEntry:
    """A 4 MiB translation (vpn and pn 1024-aligned)."""
    return TlbEntry(vpn, pn, None, True, False, False, global_, True)


def test_a_large_entry_answers_for_every_page_of_its_4mib():
    t = Tlb(8, 2)
    e = large(0x800, 0x400)
    t.insert(e)
    assert all(t.lookup(v) is e for v in (0x800, 0x801, 0x9FF, 0xBFF))
    assert t.lookup(0x7FF) is None and t.lookup(0xC00) is None
    assert t.probe(0xA00) is e
    assert cached(t) == [0x800]
    assert t.stats()["large_entries"] == 8


def test_large_entries_have_their_own_fully_associative_pool():
    t = Tlb(2, 2, "lru", large=2)
    dropped = []
    t.on_drop = lambda x: dropped.append((x.vpn, x.large))
    fill(t, [1, 2])
    t.insert(large(0x400, 0x400))
    t.insert(large(0x800, 0x800))
    t.lookup(0x401)                          # a use of the first large entry
    v = t.insert(large(0xC00, 0xC00))
    assert v.vpn == 0x800 and v.large
    assert dropped == [(0x800, True)]
    assert sorted(cached(t)) == [1, 2, 0x400, 0xC00]     # the small ones stay
    assert t.evictions == 1
    fill(t, [3])                             # and small ones evict only small ones
    assert sorted(cached(t)) == [2, 3, 0x400, 0xC00]


def test_invlpg_of_any_page_of_a_large_entry_drops_it():
    t = Tlb(8, 2)
    t.insert(large(0x800, 0x400))
    dropped = []
    t.on_drop = dropped.append
    t.invlpg(0xBFF)
    assert [e.vpn for e in dropped] == [0x800]
    assert t.lookup(0x800) is None and t.invlpgs == 1


def test_flush_keeps_a_global_large_entry_only_when_asked():
    t = Tlb(8, 2)
    t.insert(large(0x800, 0x400, global_=True))
    t.insert(large(0xC00, 0x800))
    t.flush(keep_global=True)
    assert cached(t) == [0x800]
    t.flush(keep_global=False)
    assert cached(t) == [] and t.flushes == 2


def test_a_tlb_without_large_entries_is_refused():
    with pytest.raises(ValueError, match="large"):
        Tlb(8, 2, large=0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("insert", "large", "lookup", "use", "invlpg",
                                           "flush")),
                          st.integers(0, 40)), max_size=200))
def test_skipping_the_touch_of_the_most_recent_page_changes_no_order(ops):
    """The MMU's hit path does not tell the TLB of a use of ``recent`` (the
    page a touch would leave where it is): every set keeps exactly the
    order it has when every use is told."""
    told, skipped = Tlb(8, 2, "lru"), Tlb(8, 2, "lru")
    for op, vpn in ops:
        for t in (told, skipped):
            if op == "insert":
                t.insert(TlbEntry(vpn, vpn, None, True, True, True, vpn % 3 == 0))
            elif op == "large":
                base = vpn << 10
                t.insert(TlbEntry(base, base, None, True, True, True, False, True))
            elif op == "lookup":
                t.lookup(vpn)
            elif op == "use":
                used = _held(t, vpn)
                if used is not None and (t is told or used != t.recent):
                    t.touch(used)
            elif op == "invlpg":
                t.invlpg(vpn)
            else:
                t.flush(keep_global=vpn % 2 == 0)
        assert [list(s) for s in told.sets] == [list(s) for s in skipped.sets]
        assert list(told.large) == list(skipped.large)


def _held(t: Tlb, vpn: int):
    """A vpn the TLB translates (the hit path uses only those), near ``vpn``."""
    held = [e.vpn for e in t.valid_entries()]
    return held[vpn % len(held)] if held else None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000), st.booleans()),
                max_size=40),
       st.integers(0, 3100))
def test_the_entries_to_a_page_are_those_that_translate_to_it(inserts, pn):
    """What the host's reclaim asks of each page it takes: every valid
    entry whose translation reaches ``pn`` (a large one: any of its 1,024
    pages), in the order of ``valid_entries``."""
    t = Tlb(16, 4, large=4)
    for vpn, frame, large in inserts:
        if large:
            t.insert(TlbEntry(vpn & ~0x3FF, frame & ~0x3FF, None, True, True, True, False,
                              large=True))
        else:
            t.insert(TlbEntry(vpn, frame, bytearray(1), True, True, True, False))
    for page in {pn, *(f for _, f, _ in inserts), *(f + 5 for _, f, _ in inserts)}:
        expected = [e for e in t.valid_entries()
                    if (e.pn <= page < e.pn + 1024 if e.large else e.pn == page)]
        assert t.entries_to(page) == expected
