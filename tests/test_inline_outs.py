"""An out to the console inside a translated block (``translate``'s
``_gen_out``, ``Cpu.inline_out``) is a shortcut, never a change: every
guest, in every mode, TLB shape and clock, cut into batches of any size or
stopped by its cycle budget anywhere, ends with the same result, the same
counters (the ITLB's lookups, one per piece the block stands for,
included), the same TLB contents in the same order, the same simulated
time and the same bytes in every page of memory as when every such out
ends its block and runs as a system instruction of its own.  Only the
count of blocks translated differs: fewer, larger blocks."""

from __future__ import annotations

import pathlib

import pytest

from emu import programs
from emu.asm.assembler import assemble
from emu.cli import build_parser, config_from
from emu.hw import cpu as cpu_module
from emu.hw import cpu_blocks, exceptions, translate
from emu.hw.translate import PRE
from emu.system import System

HERE = pathlib.Path(__file__).parent
OUTS = HERE / "programs" / "outs.s"
GUESTS = [name for name, _ in programs.catalogue()] + [str(OUTS)]
SHAPES = {"default": {}, "cycles": {"clock": "cycles"},
          "fifo8x2": {"tlb_policy": "fifo", "tlb_entries": 8, "tlb_ways": 2},
          "unified": {"tlb_kind": "unified", "clock": "cycles"}}
CASES = [pytest.param(name, mode, shape, id=f"{pathlib.Path(name).stem}-{mode}-{label}")
         for name in GUESTS for mode in ("native", "shadow", "nested")
         for label, shape in SHAPES.items()]


def _separate_outs(mp: pytest.MonkeyPatch) -> None:
    """Every out ends its block, as a system instruction (and nothing
    translated the other way is found again)."""
    mp.setattr(translate, "console_out", lambda d: False)
    mp.setattr(cpu_blocks, "_SEEN", {})


def _guest(name: str, mode: str, **changes) -> System:
    path = programs.resolve(name)
    args = build_parser().parse_args(["run", path, *programs.default_options(path)])
    return System(programs.assemble_file(path), config_from(args).with_(mode=mode, **changes))


def _end(system: System, batch: int | None = None):
    system.max_batch_insns = batch
    r = system.run()
    stats = r.stats
    stats["cpu"].pop("blocks_translated")
    tlbs = [[(e.vpn, e.pn, e.writable, e.user, e.dirty, e.global_) for s in (*t.sets, t.large)
             for e in s.values()] for t in (system.itlb, system.dtlb)]
    memory = {pn: bytes(page) for pn, page in system.mem.pages.items() if any(page)}
    return (r.guest_visible(), stats, r.cycles, float(system.env.now), system.cpu.registers(),
            tlbs, memory)


def _same(fast, slow) -> None:
    for i, what in enumerate(("guest-visible result", "stats", "cycles", "time", "registers",
                              "TLBs", "memory")):
        assert fast[i] == slow[i], f"{what} differ"


@pytest.mark.parametrize("name, mode, shape", CASES)
def test_outs_inside_blocks_change_nothing(name, mode, shape, monkeypatch):
    fast = _end(_guest(name, mode, **shape))
    _separate_outs(monkeypatch)
    slow = _end(_guest(name, mode, **shape))
    _same(fast, slow)


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 13, 33])
def test_batches_of_any_size_end_where_they_did(mode, batch, monkeypatch):
    """A batch too short for a block runs the block's first piece (the
    block before its first out), or one instruction, as before."""
    fast = _end(_guest(str(OUTS), mode), batch)
    _separate_outs(monkeypatch)
    slow = _end(_guest(str(OUTS), mode), batch)
    _same(fast, slow)


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
@pytest.mark.parametrize("share", [0.13, 0.29, 0.5, 0.77, 0.91])
def test_a_cycle_budget_ends_the_run_where_it_did(mode, share, monkeypatch):
    whole = _guest(str(OUTS), mode, clock="cycles").run()
    budget = int(whole.cycles * share)
    system = _guest(str(OUTS), mode, clock="cycles", max_cycles=budget)
    fast = _end(system)
    assert system.outcome == "budget"
    _separate_outs(monkeypatch)
    _same(fast, _end(_guest(str(OUTS), mode, clock="cycles", max_cycles=budget)))


def test_the_output_in_every_mode():
    want = ("".join("a" + chr(ord("A") + ((ord("a") + c) & 15)) for c in range(40, 0, -1))
            + "\n" + "xxy" * 30 + "\n#0x000004fb\n<>o\nd\n[P]\nT13\n1\n10\n")
    for mode in ("native", "shadow", "nested"):
        system = _guest(str(OUTS), mode)
        r = system.run()
        assert (r.outcome, r.console) == ("poweroff", want), mode


def test_the_comparisons_compare_something(monkeypatch):
    """The outs of ``outs.s`` run inside blocks, some batches end between a
    block's pieces, and a short batch runs a block's first piece alone."""
    ran = []
    real = cpu_module.Cpu.inline_out

    def counting(self, *a):
        ran.append(a[3])
        return real(self, *a)

    class Counted(exceptions.BudgetEnd):
        made = 0

        def __init__(self, *a):
            Counted.made += 1
            super().__init__(*a)

    monkeypatch.setattr(cpu_module.Cpu, "inline_out", counting)
    monkeypatch.setattr(cpu_module, "BudgetEnd", Counted)
    monkeypatch.setattr(translate, "BudgetEnd", Counted)
    system = _guest(str(OUTS), "native", clock="cycles")
    system.run()
    assert len(ran) > 150 and 0 in ran and 1 in ran     # first in a block, and not
    assert Counted.made > 0
    system = _guest(str(OUTS), "shadow")
    system.max_batch_insns = 5
    system.run()
    assert any(key & PRE for blocks in system.mmu.code.values() for key in blocks)


def test_a_block_holds_one_out_and_its_pieces_counts():
    image = assemble("bits 32\norg 0x1000\nmov eax, 1\nout 0xE9, al\ninc eax\n"
                     "out 0xE9, eax\nout 0xE9, al\njmp 0x1000\n", "<t>")
    (addr, code), = image.segments

    def fetch(va):
        return code[va - addr]
    decoded = translate.decode_block(fetch, addr, False, True)
    assert [d.insn.mnemonic for d in decoded] == ["mov", "out", "inc"]
    assert [d.insn.mnemonic for d in translate.decode_block(fetch, addr, False)] == ["mov"]
    assert [d.insn.mnemonic for d in translate.decode_block(fetch, addr, True, True)] == ["mov"]
    costs = _guest("hello", "native").cpu.costs
    _code, n, cycles, drefs, convention, meta = translate.made_block(decoded, costs)
    assert (n, convention, meta.first_piece, meta.pieces) == (3, True, 1, (6, 9))
    assert "_out(eax & 0xFF, (E + 6) & 0xFFFFFFFF, (E + 9) & 0xFFFFFFFF, 1, " in meta.source
    # an out to another port, or through dx, ends the block as before
    image = assemble("bits 32\norg 0x1000\ninc eax\nout 0xF4, al\ninc eax\n", "<t>")
    (addr, code), = image.segments
    assert [d.insn.mnemonic for d in translate.decode_block(fetch, addr, False, True)] == ["inc"]


def test_code_that_prints_many_characters_is_made_once(monkeypatch):
    """One out a block: where every character ends its batch (nobody may
    take it in place), the blocks made from the piece after each out are
    as many as the outs, not one for every suffix of the code."""
    body = "".join(f"    mov al, {65 + i % 26}\n    out CONSOLE, al\n" for i in range(120))
    image = assemble(f"bits 32\n%include \"kernel.inc\"\norg 0x1000\n_start:\n{body}"
                     "    mov eax, 0\n    out POWER, eax\n", "<t>",
                     include_dirs=[str(programs.include_dir())])
    made = []
    real = translate._generate

    def counting(decoded, costs, loops):
        made.append(len(decoded))
        return real(decoded, costs, loops)
    monkeypatch.setattr(translate, "_generate", counting)
    monkeypatch.setattr(translate, "_MADE", {})
    monkeypatch.setattr(cpu_blocks, "_SEEN", {})
    from emu.system_vcpu import VcpuMixin
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    r = System(image, _guest("hello", "native").config).run()
    assert r.console == "".join(chr(65 + i % 26) for i in range(120))
    assert max(made) <= 3 and sum(made) <= 3 * 240


def test_a_store_into_a_later_piece_ends_the_block_one_fetch_more(monkeypatch):
    """The one difference (see DECISIONS): a store into the code of a later
    piece of its own block hits translated code -- as separate blocks,
    that piece was not translated yet -- so the block ends after the
    store and the rest is fetched anew: one ITLB lookup (a hit) more, and
    nothing else changes."""
    source = """bits 32
%include "kernel.inc"
org 0x1000
_start:
    mov esp, 0x80000
    mov ecx, 0                      ; identity-map the first 4 MiB
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [0x101000 + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [0x100000], 0x101000 | PTE_P | PTE_W
    mov eax, 0x100000
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov byte [later + 2], 'P'       ; (the immediate of mov al)
    mov al, '['
    out CONSOLE, al
later:
    mov al, '?'
    out CONSOLE, al
    mov eax, 0
    out POWER, eax
"""
    image = assemble(source, "<t>", include_dirs=[str(programs.include_dir())])

    def run():
        system = System(image, _guest("hello", "native").config)
        return _end(system)
    fast = run()
    _separate_outs(monkeypatch)
    slow = run()
    assert fast[0] == slow[0] and fast[0]["console"] == "[P"
    fast_mmu, slow_mmu = fast[1].pop("mmu"), slow[1].pop("mmu")
    for key in ("lookups", "hits"):
        assert fast_mmu["itlb"].pop(key) == slow_mmu["itlb"].pop(key) + 1
    assert fast_mmu == slow_mmu
    _same(fast, slow)
