"""rep movs/stos a page at a time (``emu/hw/strings.py``) against the
element-by-element definition, in every mode: the same registers, memory,
console, trace events and counters (TLB lookups, hits, misses, fills,
evictions, walks, cycles), with paging on, across pages, backward, into a
hole whose #PF handler maps the page and returns (the rep resumes), with a
TLB so small the source and destination evict each other, and beyond
``REP_CHUNK`` iterations."""

from __future__ import annotations

import pytest
from harness import PGTAB, TRAP_SETUP, paging_on, trap_data

from emu.asm import assemble
from emu.hw import strings
from emu.system import MODES, Config, System
from emu.trace import TraceBus

HOLE = 0x43000          # a page paging_on leaves not present
PF_HANDLER = f"""
pf_handler:             ; map the faulting page (identity) and retry
    push eax
    push ebx
    mov eax, cr2
    mov ebx, eax
    and eax, 0xFFFFF000
    or eax, 7
    shr ebx, 12
    mov [{PGTAB:#x} + ebx*4], eax
    pop ebx
    pop eax
    add esp, 4
    iret
"""


def element_by_element(cpu, limit, size, move):
    """The definition: every element through Mmu.read/Mmu.write."""
    strings.element_wise(cpu, limit - cpu.string_done, size, move, -size if cpu.df else size)


def _host_free(stats):
    if isinstance(stats, dict):
        return {k: _host_free(v) for k, v in stats.items() if k != "host_seconds"}
    return stats


def _run(body: str, mode: str, **config):
    source = "\n".join(["org 0x1000", "_start:", "    mov esp, 0x80000", TRAP_SETUP,
                        paging_on(hole=HOLE), body, "    out 0xF4, eax", "align 16",
                        trap_data(handlers={14: "pf_handler"}), PF_HANDLER, ""])
    events = []
    bus = TraceBus()
    bus.subscribe(events.append)
    config.setdefault("mem_mib", 1)
    s = System(assemble(source, "<strings>"), Config(mode=mode, **config), bus)
    r = s.run()
    assert r.outcome == "poweroff", r.message
    return (r.guest_visible(), _host_free(r.stats), r.cycles, events,
            s.cpu.rep_overwrote_itself)


CASES = {
    "movsd across pages": "    mov esi, 0x20010\n    mov edi, 0x30ff8\n    mov ecx, 3000\n"
                          "    rep movsd\n",
    "movsd a dword crossing pages": "    mov esi, 0x20ffe\n    mov edi, 0x22ffd\n"
                                    "    mov ecx, 700\n    rep movsd\n",
    "stosd into the hole and on": "    mov edi, 0x42f00\n    mov eax, 0xA5A5A5A5\n"
                                  "    mov ecx, 2000\n    rep stosd\n",
    "movsb out of the hole": "    mov esi, 0x42ff0\n    mov edi, 0x50000\n    mov ecx, 9000\n"
                             "    rep movsb\n",
    "backward movsd": "    std\n    mov esi, 0x25000\n    mov edi, 0x28002\n    mov ecx, 2500\n"
                      "    rep movsd\n    cld\n",
    "backward stosb into the hole": "    std\n    mov edi, 0x44010\n    mov eax, 0x61\n"
                                    "    mov ecx, 6000\n    rep stosb\n    cld\n",
    "overlapping movsd": "    mov esi, 0x20000\n    mov edi, 0x20004\n    mov ecx, 5000\n"
                         "    rep movsd\n",
    "one page, both ways": "    mov esi, 0x21100\n    mov edi, 0x21000\n    mov ecx, 300\n"
                           "    rep movsd\n    std\n    mov ecx, 200\n    rep movsb\n    cld\n",
}
TLBS = {
    "default": {},
    "one entry": dict(tlb_entries=1, tlb_ways=1, tlb_kind="unified", tlb_large=1),
    "random": dict(tlb_entries=4, tlb_ways=2, tlb_policy="random", seed=3),
}


@pytest.mark.parametrize("tlb", TLBS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_page_at_a_time_is_exactly_element_by_element(monkeypatch, mode, case, tlb):
    chunked = _run(CASES[case], mode, **TLBS[tlb])
    monkeypatch.setattr(strings, "run", element_by_element)
    reference = _run(CASES[case], mode, **TLBS[tlb])
    assert chunked[0] == reference[0]          # registers, memory, console, instructions
    assert chunked[1] == reference[1]          # every counter
    assert chunked[2] == reference[2]          # cycles
    assert chunked[3] == reference[3]          # the trace
    assert chunked[4] == reference[4]


def test_the_hole_faults_once_and_the_rep_resumes(monkeypatch):
    gv, stats, _, events, _ = _run(CASES["stosd into the hole and on"], "native")
    assert stats["cpu"]["exceptions"] == {"14": 1}
    assert gv["registers"]["edi"] == 0x42F00 + 4 * 2000
    assert gv["registers"]["ecx"] == 0


def test_a_rep_storing_over_its_own_bytes_is_flagged():
    body = "    mov edi, the_rep\n    mov eax, 0x90909090\n    mov ecx, 1\nthe_rep:\n" \
           "    rep stosd\n"
    assert _run(body, "native")[4] is True
    assert _run("    mov edi, 0x30000\n    mov ecx, 4\n    rep stosd\n", "native")[4] is False
