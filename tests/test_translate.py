"""What the block translator generates: a block loads a register or flag
only if its value at entry can be used -- read by the block, or stored back
by the fault path of an instruction that may fault before the block sets
it.  (Every guest-visible effect of blocks is checked elsewhere, against
single steps and against x86; here, that the loads left out are exactly
the dead ones.)"""

from __future__ import annotations

import pytest

from emu import isa
from emu.asm import assemble
from emu.cost import DEFAULT_COSTS
from emu.hw.translate import decode_block, made_block


def block_source(body: str) -> str:
    image = assemble(f"bits 32\norg 0x1000\n{body}\n", "<t>")
    (addr, code), = image.segments
    decoded = decode_block(lambda va: code[va - addr], addr, False)
    return made_block(decoded, DEFAULT_COSTS)[5].source


def loads(source: str) -> list[str]:
    """The names the block loads at entry (``eax = r[0]``, ``cf = cpu.cf``)."""
    out = []
    for line in source.splitlines()[1:]:
        name, _, value = line.strip().partition(" = ")
        if value not in (f"cpu.{name}", f"r[{isa.REGS32.index(name)}]" if name in isa.REGS32
                         else None):
            break
        out.append(name)
    return out


@pytest.mark.parametrize("body, loaded", [
    # cmp sets every flag before the branch reads zf: nothing of them is loaded
    ("cmp ecx, 5\njne 0x1000", ["ecx"]),
    # inc reads ecx; inc and cmp set every flag (cf by cmp) before jne reads
    ("inc ecx\ncmp ecx, 96\njne 0x1000", ["ecx"]),
    # mov sets eax before any read: not loaded; ebx is read
    ("mov eax, 7\nadd eax, ebx\nret", ["ebx", "esp"]),
    # a load from memory may fault before test sets the flags: the fault
    # path stores them back, so they are loaded; eax is set only after the fault
    ("mov eax, [esi + ecx*4]\ntest eax, 1\nje 0x1000",
     ["eax", "ecx", "esi", "af", "cf", "of", "pf", "sf", "zf"]),
    # inc leaves cf alone and adc reads it: cf is loaded, the rest are set first
    ("inc eax\nadc ebx, 1\nret", ["eax", "ebx", "esp", "cf"]),
    # a shift by cl sets the flags only if cl is not 0: they are loaded
    ("shl eax, cl\njz 0x1000", ["eax", "ecx", "af", "cf", "of", "pf", "sf", "zf"]),
])
def test_a_block_loads_only_what_it_may_use(body, loaded):
    assert loads(block_source(body)) == loaded
