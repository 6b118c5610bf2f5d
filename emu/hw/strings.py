"""``movs``/``stos`` (with or without ``rep``), a page at a time; ``repe``/
``repne`` ``cmps``/``scas`` element by element.

The architectural story is element by element: each iteration reads
``[esi]`` (movs), writes ``[edi]``, then steps esi/edi by the element size
(down when DF=1) and, under ``rep``, decrements ecx.  ``element_wise`` runs
exactly that through the MMU's slow path.  ``run`` produces the same result
-- memory, registers, faults, A/D bits, TLB fills, misses, lookups, LRU
order, walk cycles -- with one translation per page:

* a *run* is the elements that stay inside the current source page and the
  current destination page (an element that crosses a page goes through
  ``element_wise``);
* its first element translates both pages exactly as the element-wise path
  would (source read first, then the write of the destination), so every
  walk, fill and fault happens where it would;
* the other elements of the run would all hit those two TLB entries (and,
  for LRU, leave them in the same order): the run counts their lookups and
  moves the bytes with one slice copy or fill.  If filling the destination
  evicted the source's entry (a conflict in a tiny TLB), the rest of the run
  goes element by element;
* a source and a destination in the same physical page that overlap in the
  direction where an element reads bytes an earlier one wrote are copied
  element by element on the page's bytes.

A ``rep`` runs at most ``REP_CHUNK`` iterations per batch
(docs/DECISIONS.md); a fault leaves esi, edi and ecx after the elements done.

``compare`` runs ``repe``/``repne`` ``cmps``/``scas`` through ``Mmu.read``,
one element at a time: each reads ``[esi]`` (cmps) then ``[edi]``, so every
walk, fill, fault and A bit is the element-wise one by construction.
"""

from __future__ import annotations

REP_CHUNK = 4096    # iterations of a rep string instruction between interruption points
M = 0xFFFFFFFF


def element_wise(cpu, n: int, size: int, move: bool, step: int) -> int:
    """Run ``n`` elements through ``Mmu.read``/``Mmu.write``; returns how
    many completed (all of them, or a fault propagates after updating the
    registers of the completed ones)."""
    mmu, r = cpu.mmu, cpu.r
    value = r[0] & (0xFF if size == 1 else M)
    for _ in range(n):
        if move:
            value = mmu.read(r[6], size)
        mmu.write(r[7], size, value)
        if move:
            r[6] = (r[6] + step) & M
        r[7] = (r[7] + step) & M
        cpu.string_done += 1
    return n


def compare(cpu, limit: int, size: int, scan: bool, stop_zf: int) -> bool:
    """Run up to ``limit`` iterations of ``cmps`` (``scan``: ``scas``): the
    flags of a - [edi], a being al/eax or [esi]; esi (cmps) and edi step by
    the size.  True when an iteration's ZF was ``stop_zf`` (0 for repe, 1
    for repne), which ends the repeat.  ``cpu.string_done`` counts the
    completed iterations and the flags are those of the last one, also when
    a fault propagates (the faulting iteration changes nothing)."""
    mmu, r = cpu.mmu, cpu.r
    step = -size if cpu.df else size
    width = 0xFF if size == 1 else M
    sign = 8 * size - 1
    a = b = None
    stopped = False
    try:
        for _ in range(limit):
            x = r[0] & width if scan else mmu.read(r[6], size)
            y = mmu.read(r[7], size)
            a, b = x, y
            if not scan:
                r[6] = (r[6] + step) & M
            r[7] = (r[7] + step) & M
            cpu.string_done += 1
            if (x == y) == stop_zf:
                stopped = True
                break
    finally:
        if a is not None:
            res = (a - b) & width
            cpu.cf = int(a < b)
            cpu.zf = int(res == 0)
            cpu.sf = res >> sign
            cpu.of = ((a ^ b) & (a ^ res)) >> sign
            cpu.pf = res            # lazy PF and AF (semantics.py)
            cpu.af = a ^ b
    return stopped


def run(cpu, limit: int, size: int, move: bool) -> None:
    """Run up to ``limit`` elements (see the module doc); ``cpu.string_done``
    counts the completed ones (kept exact when a fault propagates)."""
    mmu, r = cpu.mmu, cpu.r
    backward = bool(cpu.df)
    step = -size if backward else size
    tlb = mmu.dtlb
    rfast, wfast = mmu.rfast, mmu.wfast
    lru = tlb.policy == "lru"
    paging = mmu.paging
    pattern = None if move else (r[0] & (0xFF if size == 1 else M)).to_bytes(size, "little")
    done = cpu.string_done
    src = None
    while done < limit:
        s, d = r[6], r[7]
        # n: the elements from here that stay inside the source's and the
        # destination's pages (0: the first one crosses into the next page).
        od, os_ = d & 0xFFF, s & 0xFFF
        if od + size > 0x1000 or (move and os_ + size > 0x1000):
            n = 0
        elif backward:
            n = od // size + 1
            if move and os_ < od:
                n = os_ // size + 1
        else:
            n = (0x1000 - od) // size
            if move and os_ > od:
                n = (0x1000 - os_) // size
        if n == 0:
            cpu.string_done = done
            element_wise(cpu, 1, size, move, step)
            done = cpu.string_done
            continue
        if n > limit - done:
            n = limit - done
        # The first element: translations exactly as Mmu.read/write make them.
        if move:
            vs = s >> 12
            src = rfast.get(vs)
            if src is None:
                cpu.string_done = done
                src = mmu.translate(s, False, False, True)[0]
            elif paging:
                tlb.lookups += 1
                if lru:
                    tlb.touch(vs)
        vd = d >> 12
        dst = wfast.get(vd)
        if dst is None:
            cpu.string_done = done
            dst, pn = mmu.translate(d, True, False, True)
            # translated code among the bytes it writes is stale now
            lo = od - (n - 1) * size if backward else od
            mmu.wrote_bytes(pn, lo, lo + n * size)
        elif paging:
            tlb.lookups += 1
            if lru:
                tlb.touch(vd)
        if paging and n > 1:
            if move and tlb.probe(vs) is None:
                # The destination's fill evicted the source: every element
                # misses again, as the element-wise path would.
                cpu.string_done = done
                _move_bytes(cpu, src, dst, s, d, 1, size, move, pattern, backward)
                element_wise(cpu, n - 1, size, move, step)
                done = cpu.string_done
                continue
            tlb.lookups += (n - 1) * (2 if move else 1)
        span = n * size
        if not backward and (not move or src is not dst):
            # the common case: forward, two different pages (or a fill)
            if move:
                dst[od:od + span] = src[os_:os_ + span]
                r[6] = (s + span) & M
            else:
                dst[od:od + span] = pattern * n
            r[7] = (d + span) & M
            done += n
        else:
            cpu.string_done = done
            _move_bytes(cpu, src, dst, s, d, n, size, move, pattern, backward)
            done = cpu.string_done
    cpu.string_done = done


def _move_bytes(cpu, src, dst, s, d, n, size, move, pattern, backward) -> None:
    """Move (or fill) ``n`` elements within one source and one destination
    page, as element-by-element stores would leave them; advance the
    registers."""
    r = cpu.r
    span = n * size
    od = d & 0xFFF
    lo_d = od - span + size if backward else od
    if move:
        os_ = s & 0xFFF
        lo_s = os_ - span + size if backward else os_
        overlap = src is dst and lo_s < lo_d + span and lo_d < lo_s + span
        unsafe = overlap and (lo_d < lo_s if backward else lo_d > lo_s)
        if unsafe:
            step = -size if backward else size
            for k in range(n):
                a, b = os_ + k * step, od + k * step
                dst[b:b + size] = src[a:a + size]
        elif src is dst:
            dst[lo_d:lo_d + span] = src[lo_s:lo_s + span]
        else:
            dst[lo_d:lo_d + span] = memoryview(src)[lo_s:lo_s + span]
        r[6] = (s - span if backward else s + span) & M
    else:
        dst[lo_d:lo_d + span] = pattern * n
    r[7] = (d - span if backward else d + span) & M
    cpu.string_done += n
