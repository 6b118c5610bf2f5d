"""The MMU's hit path: the ``rd32/wr32/rd8/wr8`` closures translated code
calls for every data access (see ``mmu.py``'s module doc).

Each makes ONE dict lookup in the fast maps when the access hits; a write
to a page with translated code looks in ``cwfast`` next and checks the
bytes it writes (``Mmu.code_bytes``); anything else goes to the slow path:
a read within one page to ``Mmu.translate`` itself (what ``Mmu.read``
would do, a call shorter), the rest to ``Mmu.read`` / ``Mmu.write``.  Two
sets are built per MMU: one that tells an LRU TLB of each use, one that
does not (paging off, or another policy); the MMU binds the one its state
asks for (``Mmu._bind_hit_path``).  They are closures over the MMU's own
dicts, copied by hand rather than shared through a helper: every call
here is one guest memory access.
"""

from __future__ import annotations

from struct import Struct

_U32 = Struct("<I")


def build(mmu) -> dict:
    """The hit paths of ``mmu``: {lru: {"rd32": ..., "wr32": ..., "rd8": ...,
    "wr8": ...}}, ``lru`` True for the paths that tell an LRU TLB of each
    use (paging on), False for those that need not."""
    rfast = mmu.rfast
    wfast = mmu.wfast
    cwfast = mmu.cwfast       # (a page with code: the written bytes are checked)
    code_bytes = mmu.code_bytes
    read = mmu.read
    translate = mmu.translate
    write = mmu.write
    unpack32 = _U32.unpack_from
    pack32 = _U32.pack_into
    touch = mmu.dtlb.touch
    dtlb = mmu.dtlb           # (a use of its most recent page needs no touch)
    paths = {}
    if True:
        def rd32(va):
            page = rfast.get(va >> 12)
            if page is not None:
                off = va & 0xFFF
                if off <= 0xFFC:
                    if va >> 12 != dtlb.recent:
                        touch(va >> 12)
                    return unpack32(page, off)[0]
            if va & 0xFFF <= 0xFFC:     # (read's own path, one call shorter)
                return unpack32(translate(va, False, False, False)[0], va & 0xFFF)[0]
            return read(va, 4, False)

        def wr32(va, value):
            page = wfast.get(va >> 12)
            if page is not None:
                off = va & 0xFFF
                if off <= 0xFFC:
                    if va >> 12 != dtlb.recent:
                        touch(va >> 12)
                    pack32(page, off, value)
                    return
            held = cwfast.get(va >> 12)
            if held is not None:
                off = va & 0xFFF
                marked = code_bytes.get(held[1])
                if off <= 0xFFC and marked is not None and marked.find(1, off, off + 4) < 0:
                    if va >> 12 != dtlb.recent:
                        touch(va >> 12)
                    pack32(held[0], off, value)
                    return
            write(va, 4, value, False)

        def rd8(va):
            page = rfast.get(va >> 12)
            if page is not None:
                if va >> 12 != dtlb.recent:
                    touch(va >> 12)
                return page[va & 0xFFF]
            return translate(va, False, False, False)[0][va & 0xFFF]

        def wr8(va, value):
            page = wfast.get(va >> 12)
            if page is not None:
                if va >> 12 != dtlb.recent:
                    touch(va >> 12)
                page[va & 0xFFF] = value
                return
            held = cwfast.get(va >> 12)
            if held is not None:
                marked = code_bytes.get(held[1])
                if marked is not None and not marked[va & 0xFFF]:
                    if va >> 12 != dtlb.recent:
                        touch(va >> 12)
                    held[0][va & 0xFFF] = value
                    return
            write(va, 1, value, False)
    paths[True] = dict(rd32=rd32, wr32=wr32, rd8=rd8, wr8=wr8)
    if True:
        def rd32(va):
            page = rfast.get(va >> 12)
            if page is not None:
                off = va & 0xFFF
                if off <= 0xFFC:
                    return unpack32(page, off)[0]
            if va & 0xFFF <= 0xFFC:     # (read's own path, one call shorter)
                return unpack32(translate(va, False, False, False)[0], va & 0xFFF)[0]
            return read(va, 4, False)

        def wr32(va, value):
            page = wfast.get(va >> 12)
            if page is not None:
                off = va & 0xFFF
                if off <= 0xFFC:
                    pack32(page, off, value)
                    return
            held = cwfast.get(va >> 12)
            if held is not None:
                off = va & 0xFFF
                marked = code_bytes.get(held[1])
                if off <= 0xFFC and marked is not None and marked.find(1, off, off + 4) < 0:
                    pack32(held[0], off, value)
                    return
            write(va, 4, value, False)

        def rd8(va):
            page = rfast.get(va >> 12)
            if page is not None:
                return page[va & 0xFFF]
            return translate(va, False, False, False)[0][va & 0xFFF]

        def wr8(va, value):
            page = wfast.get(va >> 12)
            if page is not None:
                page[va & 0xFFF] = value
                return
            held = cwfast.get(va >> 12)
            if held is not None:
                marked = code_bytes.get(held[1])
                if marked is not None and not marked[va & 0xFFF]:
                    held[0][va & 0xFFF] = value
                    return
            write(va, 1, value, False)

    paths[False] = dict(rd32=rd32, wr32=wr32, rd8=rd8, wr8=wr8)
    return paths
