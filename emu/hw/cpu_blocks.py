"""The blocks the dispatcher runs: the guest's code at an eip, translated
once and kept (a mixin of ``Cpu``).

``BlockMaker._translate(eip, kind)`` makes the block at ``eip`` -- a basic
block, one instruction, or the block up to its first out to the console --
from a recipe: the same bytes at the same place are decoded once per
process (``_SEEN``, shared by every CPU: another run of the guest, another
VM) and bound to each CPU once (``Cpu._known``, kept by their bytes, as
the page's translations are dropped when any byte of it is written).  A
system instruction is a block of its own that calls the CPU's method for
it; an undecodable one raises #UD when it runs; one that crosses a page
is never kept.
"""

from __future__ import annotations

from .. import isa
from .exceptions import GP, UD, GuestFault
from .memory import PAGE_SIZE
from .translate import (
    PRE,
    SINGLE,
    Block,
    bind_block,
    count_new,
    decode_block,
    made_block,
    translate,
)

KNOWN_LIMIT = 20_000     # blocks remembered by their bytes (see ``_translate``)
# block key (eip, or eip | SINGLE) -> (costs, loop blocks, the bytes it was
# decoded from, its recipe): the translations of every CPU of the process.
_SEEN: dict[int, tuple] = {}
_new = tuple.__new__


class BlockMaker:
    """The CPU's translations (see the module doc); ``Cpu`` holds the state
    they use (``mmu``, ``costs``, ``loop_blocks``, ``_known``, ``_system``)."""

    def _fitting(self, blocks: dict, eip: int, b: Block, room: int) -> Block:
        """The translation to run at ``eip`` where block ``b`` holds more
        instructions than the batch has ``room`` for: the piece before its
        first out to the console if that fits (the block it would have been
        without the out), else one instruction."""
        first = b.meta.first_piece if b.meta is not None else 0
        if 1 < first <= room:
            return blocks.get(eip | PRE) or self._translate(eip, PRE)
        return blocks.get(eip | SINGLE) or self._translate(eip, SINGLE)

    def _translate(self, eip: int, kind: int) -> Block:
        """Translate the block at ``eip``: ``kind`` 0, the block; ``SINGLE``,
        one instruction; ``PRE``, the block as it would be without outs to
        the console (``decode_block``)."""
        mmu = self.mmu
        page, pn = mmu.translate(eip, False, True, False)
        vpn = eip >> 12
        single = kind == SINGLE
        key = eip | kind
        off = eip & 0xFFF
        # The same bytes at the same place were translated before: by this
        # CPU (their page was written since, elsewhere), the same block; by
        # any CPU of this process (another run of the guest), the same
        # recipe.  Neither is decoded again.
        recipe = None
        known = self._known.get((pn, key))
        if known is not None and page[off:off + len(known[0])] == known[0]:
            raw, block = known
            hi = off + len(raw)        # the bytes it was read from end here
        else:
            block = None
            seen = _SEEN.get(key)
            if (seen is not None and seen[0] is self.costs and seen[1] == self.loop_blocks
                    and page[off:off + len(seen[2])] == seen[2]):
                raw, recipe = seen[2], seen[3]
                hi = off + len(raw)
            else:
                end = [off]            # the page's bytes the decoder read end here
                outside = []           # it read another page's too

                def fetch(va):
                    va &= 0xFFFFFFFF
                    if va >> 12 == vpn:
                        o = va & 0xFFF
                        if o >= end[0]:
                            end[0] = o + 1
                        return page[o]
                    outside.append(va)
                    return mmu.fetch_byte(va)

                decoded = decode_block(fetch, eip, single, self.loop_blocks and kind == 0)
                if decoded:
                    recipe = ("block", made_block(decoded, self.costs, self.loop_blocks))
                else:
                    recipe = self._lone(fetch, eip)
                hi = PAGE_SIZE if outside else end[0]
                if recipe is None or outside:
                    raw = None         # crosses into another page: never kept
                else:
                    raw = bytes(page[off:end[0]])
                    if len(_SEEN) >= KNOWN_LIMIT:
                        _SEEN.clear()
                    _SEEN[key] = (self.costs, self.loop_blocks, raw, recipe)
        blocks = mmu.code.setdefault(pn, {})
        cached = blocks.get(key)
        if cached is not None:
            return cached
        if block is None:
            if recipe is None:
                return self._lone_uncached(eip)
            block = self._block_from(recipe, eip)
            if raw is not None:
                if len(self._known) >= KNOWN_LIMIT:
                    self._known.clear()
                self._known[(pn, key)] = (raw, block)
        if not blocks:
            mmu.code_page_used(pn)
        blocks[key] = block
        self.blocks_translated += count_new(blocks, key if single else eip, block)
        mmu.mark_code(pn, off, max(hi, off + 1))
        return block

    def _lone(self, fetch, eip: int):
        """The recipe of a system instruction or an undecodable one; None
        for an instruction that crosses a page (never cached)."""
        try:
            d = isa.decode(fetch, eip)
        except isa.DecodeError:
            return ("undefined", None)
        if (eip + d.length - 1) >> 12 != eip >> 12:
            return None
        return ("system", d)

    def _block_from(self, recipe, eip: int) -> Block:
        """This CPU's block made from a recipe (``_translate``)."""
        kind, what = recipe
        if kind == "block":
            return bind_block(what, self)
        if kind == "system":
            return self._system_block(what, eip)

        def undefined(E):
            raise GuestFault(UD)
        return Block(undefined, 1, 1, 0, False, None)

    def _lone_uncached(self, eip: int) -> Block:
        d = isa.decode(self.mmu.fetch_byte, eip)   # crossing: both pages, lowest first
        if self.mmu.paging:
            self.mmu.itlb.lookups += 1
        if d.insn.kind in (isa.SYSTEM, isa.PRIV):
            return self._system_block(d, eip)
        return translate(self, [d], self.costs, self.loop_blocks)

    def _system_block(self, d: isa.Decoded, eip: int) -> Block:
        op = self._system[d.insn.opcode]
        priv = d.insn.kind == isa.PRIV
        next_eip = eip + d.length

        def system(E):
            if priv and self.cpl != 0:
                raise GuestFault(GP, 0)
            return op(d, eip, next_eip)
        return _new(Block, (system, 1, d.insn.cycles, 0, False, None))
