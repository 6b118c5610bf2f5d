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
from emu.system_vcpu import VcpuMixin
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


def _source(body: str) -> str:
    return "\n".join(["org 0x1000", "_start:", "    mov esp, 0x80000", TRAP_SETUP,
                      paging_on(hole=HOLE), body, "    out 0xF4, eax", "align 16",
                      trap_data(handlers={14: "pf_handler"}), PF_HANDLER, ""])


def _run(body: str, mode: str, **config):
    source = _source(body)
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


# --- repe/repne cmps and scas: element by element, the same in every mode ---------
# (case: body, the registers it ends with)
COMPARE_CASES = {
    "repe cmpsd over zeros into the hole": (
        "    mov esi, 0x20010\n    mov edi, 0x42f00\n    mov ecx, 3000\n    repe cmpsd\n",
        dict(ecx=0, esi=0x20010 + 12000, edi=0x42F00 + 12000)),
    "repne scasb across the hole to its byte": (
        "    mov byte [0x47123], 0x61\n    mov edi, 0x42ff0\n    mov eax, 0x61\n"
        "    mov ecx, 0x10000\n    repne scasb\n",
        dict(ecx=0x10000 - (0x47124 - 0x42FF0), edi=0x47124)),
    "backward repe cmpsb out of the hole to a difference": (
        "    mov byte [0x21000], 1\n    std\n    mov esi, 0x21800\n    mov edi, 0x43400\n"
        "    mov ecx, 0x2000\n    repe cmpsb\n    cld\n",
        dict(ecx=0x2000 - 0x801, esi=0x21800 - 0x801, edi=0x43400 - 0x801)),
    # (twice: under a VMM the first pass exits on every new page before a
    # chunk ends; the second runs through pages already mapped)
    "repe scasd past REP_CHUNK": (
        "    mov dword [0x30000 + 4 * 8500], 3\n" + 2 * (
            "    mov edi, 0x30000\n    mov eax, 0\n    mov ecx, 9000\n    repe scasd\n"),
        dict(ecx=9000 - 8501, edi=0x30000 + 4 * 8501)),
}


@pytest.mark.parametrize("tlb", TLBS)
@pytest.mark.parametrize("case", COMPARE_CASES)
def test_compare_strings_end_the_same_in_every_mode(case, tlb):
    body, expected = COMPARE_CASES[case]
    runs = {mode: _run(body, mode, **TLBS[tlb]) for mode in MODES}
    native, *others = [run[0] for run in runs.values()]
    assert {k: native["registers"][k] for k in expected} == expected
    # the guest's handler maps the hole once, and the rep goes on
    assert runs["native"][1]["cpu"]["exceptions"] == ({"14": 1} if "hole" in case else {})
    for gv in others:
        assert gv == native


@pytest.mark.parametrize("case", COMPARE_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_compare_strings_in_place_give_the_chunk_by_chunk_figures(monkeypatch, mode, case):
    # Unwatched, a chunk of REP_CHUNK iterations goes on in the batch
    # (Cpu.rep_in_place): every figure as when each chunk ends the batch.
    image = assemble(_source(COMPARE_CASES[case][0]), "<strings>")
    taken = []
    real = VcpuMixin._direct_room

    def counted(self, cost):
        taken.append(real(self, cost))
        return taken[-1]

    def figures():
        r = System(image, Config(mode=mode, mem_mib=1)).run()
        assert r.outcome == "poweroff", r.message
        return _host_free(r.to_json())
    monkeypatch.setattr(VcpuMixin, "_direct_room", counted)
    fast = figures()
    monkeypatch.setattr(VcpuMixin, "REP_IN_PLACE", False)
    assert fast == figures()
    if "REP_CHUNK" in case:
        assert any(taken)
