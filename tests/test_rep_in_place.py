"""A rep's chunks in place (``Cpu.rep_in_place``): when nobody watches and
no other event is due, the batch goes on at the rep after each
``REP_CHUNK`` iterations instead of ending.  A shortcut, never a change:
every case of ``test_strings.py`` (paging on, across pages, backward, into
a hole the guest's #PF handler fills, tiny and random TLBs), every bundled
guest, a run whose cycle budget runs out in the middle of a rep, a timer
that interrupts one, and several VMs on one machine give exactly the
figures of the run where every chunk ends the batch -- and the shortcut is
taken (it is not a test that cannot fail)."""

from __future__ import annotations

import pytest
from harness import TRAP_SETUP, paging_on, trap_data
from test_console_in_place import _config, _figures, assert_same_machine
from test_strings import CASES, HOLE, PF_HANDLER, TLBS

from emu import programs
from emu.asm import assemble
from emu.cli import load
from emu.hw import strings
from emu.multi import run_many
from emu.system import MODES, Config, System
from emu.system_vcpu import VcpuMixin


def _source(body: str, handlers: dict | None = None, code: str = "") -> str:
    return "\n".join(["org 0x1000", "_start:", "    mov esp, 0x80000", TRAP_SETUP,
                      paging_on(hole=HOLE), body, "    out 0xF4, eax", "align 16",
                      trap_data(handlers={14: "pf_handler", **(handlers or {})}),
                      PF_HANDLER, code, ""])


def _both(monkeypatch, run):
    """(figures in place, figures chunk by chunk, times the shortcut was taken)."""
    taken = []
    real = VcpuMixin._direct_room

    def counted(self, cost):
        ok = real(self, cost)
        taken.append(ok)
        return ok
    monkeypatch.setattr(VcpuMixin, "_direct_room", counted)
    fast = run()
    monkeypatch.setattr(VcpuMixin, "REP_IN_PLACE", False)
    slow = run()
    return fast, slow, sum(taken)


@pytest.mark.parametrize("tlb", TLBS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_every_string_case_gives_the_same_figures(monkeypatch, mode, case, tlb):
    image = assemble(_source(CASES[case]), "<strings>")
    fast, slow, _ = _both(monkeypatch, lambda: System(
        image, Config(mode=mode, mem_mib=1, **TLBS[tlb])).run())
    assert fast.outcome == "poweroff", fast.message
    assert _figures(fast) == _figures(slow)


LONG = "    mov edi, 0x20000\n    mov eax, 0x5A5A5A5A\n    mov ecx, 30000\n    rep stosd\n" \
       "    mov esi, 0x20000\n    mov edi, 0x50000\n    mov ecx, 30000\n    rep movsd\n"


@pytest.mark.parametrize("mode", MODES)
def test_long_reps_go_on_in_place_with_the_same_figures(monkeypatch, mode):
    # (twice: under a VMM the first pass exits on every new page, before
    # any chunk ends; the second runs through pages already mapped)
    image = assemble(_source(LONG + LONG), "<strings>")
    fast, slow, taken = _both(monkeypatch, lambda: System(
        image, Config(mode=mode, mem_mib=1)).run())
    assert fast.outcome == "poweroff", fast.message
    assert _figures(fast) == _figures(slow)
    assert taken >= 2 * (30000 // strings.REP_CHUNK)   # chunks went on in place


@pytest.mark.parametrize("max_cycles", [40_000, 95_001, 160_003])
@pytest.mark.parametrize("mode", MODES)
def test_a_budget_that_runs_out_inside_a_rep_stops_it_in_the_same_place(
        monkeypatch, mode, max_cycles):
    image = assemble(_source(LONG), "<strings>")
    fast, slow, _ = _both(monkeypatch, lambda: System(
        image, Config(mode=mode, mem_mib=1, max_cycles=max_cycles)).run())
    assert fast.outcome == "budget"
    assert _figures(fast) == _figures(slow)


TIMED = """
    mov eax, PERIOD
    out 0x40, eax                  ; a timer tick every PERIOD cycles or instructions
    sti
""" + LONG + "    cli\n"
TICK = "tick:\n    inc dword [0x7000]\n    iret\n"


@pytest.mark.parametrize("clock", ["cycles", "instructions"])
@pytest.mark.parametrize("mode", MODES)
def test_a_timer_interrupts_a_rep_in_the_same_place(monkeypatch, mode, clock):
    period = 20_000 if clock == "cycles" else 4    # (a rep retires once)
    image = assemble(_source(TIMED.replace("PERIOD", str(period)), {32: "tick"}, TICK),
                     "<strings>")
    fast, slow, _ = _both(monkeypatch, lambda: System(
        image, Config(mode=mode, mem_mib=1, clock=clock)).run())
    assert fast.outcome == "poweroff", fast.message
    assert fast.stats["cpu"]["interrupts"] > 0
    assert _figures(fast) == _figures(slow)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", [name for name, _ in programs.catalogue()])
def test_every_guest_gives_the_same_figures(monkeypatch, name, mode):
    image, cfg = load(name), _config(name, mode, None)   # (its emu-options line)
    fast, slow, _ = _both(monkeypatch, lambda: System(image, cfg).run())
    assert _figures(fast) == _figures(slow)


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_several_vms_on_a_small_machine_give_the_same_figures(monkeypatch, mode):
    names = ["syscalls", "pager", "demand"]
    images = [load(n) for n in names]
    cfg = Config(mode=mode, machine_mib=2, swap_latency=500, share_interval=20_000)
    fast, slow, _ = _both(monkeypatch, lambda: run_many(images, names, cfg))
    assert_same_machine(fast, slow)


# A rep that starts in a page table the shadow traces: the VMM emulates it
# (``emulate_once``, the CPU run from inside the exit) and the rest of its
# first chunk runs there, over pages already mapped.  Inside the exit the
# rep stops at its chunk, as in a batch that nobody let go on.
TRACED = """
    mov edi, 0xA2000               ; map the pages after the page table first
    mov eax, 0
    mov ecx, 6 * 1024
    rep stosd
    mov edi, 0xA1800               ; entries 512.. of the page table (va 2-4 MiB), on
    mov ecx, 6000
    rep stosd
"""


@pytest.mark.parametrize("policy", ["trace-cache", "trace-drop"])
def test_a_rep_the_vmm_emulates_stops_at_its_chunk(monkeypatch, policy):
    image = assemble(_source(TRACED), "<strings>")
    fast, slow, _ = _both(monkeypatch, lambda: System(
        image, Config(mode="shadow", shadow_policy=policy, mem_mib=1)).run())
    assert fast.outcome == "poweroff", fast.message
    assert fast.stats["vmm"]["emulated"] > 0
    assert _figures(fast) == _figures(slow)
