"""``monitor`` commands of ``emu gdb``: the real GDB asks, under nested
paging (the nested walk of each guest-physical address); every command in
every mode answers in text, and a mistake is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from emu import programs
from emu.cli import load
from emu.errors import EmuError
from emu.gdb import monitor
from emu.system import MODES, Config
from emu.ui.session import Session

TIMEOUT = 60


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    out = tmp_path_factory.mktemp("elf") / "demand.elf"
    subprocess.run([sys.executable, "-m", "emu", "asm", "demand", "--elf", str(out)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return out


def test_gdb_asks_the_monitor_under_nested_paging(elf):
    import re
    server = subprocess.Popen([sys.executable, "-m", "emu", "gdb", "demand", "--mode", "nested",
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        port = re.search(r"target remote :(\d+)", server.stdout.readline()).group(1)
        argv = ["gdb", "-nx", "-batch", str(elf), "-ex", f"target remote :{port}"]
        for cmd in ("break user_main.sum", "continue", "monitor walk 0x480000",
                    "monitor disas page_fault 3", "monitor last-write va 0x480000",
                    "monitor pmap", "monitor frob", "monitor walk", "kill"):
            argv += ["-ex", cmd]
        lines = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=TIMEOUT).stdout.splitlines()
        server.wait(timeout=TIMEOUT)
    finally:
        server.kill()
    # (rich pads a table's header with spaces; the expected text has none)
    assert [line.rstrip() for line in lines] == \
        NESTED_SESSION.format(src=programs.resolve("demand")).splitlines()
    assert server.returncode == 0


def at_sum(mode: str) -> Session:
    session = Session(load("demand"), Config(mode=mode))
    session.add_breakpoint("addr", session.image.labels["user_main.sum"], "user_main.sum")
    session.cont()
    return session


@pytest.mark.parametrize("mode", MODES)
def test_every_command_answers_in_every_mode(mode):
    s = at_sum(mode)
    first = {cmd: monitor.run(s, cmd).splitlines()[0] for cmd in
             ("walk 0x480000", "tlb", "pmap", "stats", "mode", "disas", "help",
              "last-write pa 0x102200")}
    assert first["walk 0x480000"].startswith("the guest's walk of va 0x00480000")
    assert first["tlb"].startswith("itlb: 2 of 72 entries valid")
    assert first["pmap"] == {
        "native": "native mode: there is no PMap; guest-physical memory is the machine's own "
                  "memory (pa = ma)",
        "shadow": "the PMap of vm0 · 19 of 4,096 guest pages backed (the rest unbacked: they "
                  "read as zeros)",
        "nested": "the PMap of vm0 · 19 of 4,096 guest pages backed (the rest unbacked: they "
                  "read as zeros)"}[mode]
    assert first["stats"].startswith("run so far")
    assert first["mode"] == {"native": "mode native", "shadow": "mode shadow (trace-cache)",
                             "nested": "mode nested"}[mode]
    assert first["disas"] == "user_main.sum:"
    assert first["help"].startswith("    walk VA")
    assert first["last-write pa 0x102200"].startswith(
        "last-write pa 0x00102200 (ma ") and ": 0x00201007 -> 0x00201067 by" in \
        first["last-write pa 0x102200"]
    walk = monitor.run(s, "walk 0x480000")
    assert ("PMap: ppn 0x201 -> mpn" in walk) == (mode != "native")
    assert ("shadow: spde[0x001]" in walk) == (mode == "shadow")
    assert ("data @ pa 0x00201000: npte[0x201]" in walk) == (mode == "nested")


def test_a_nested_walk_shows_where_the_guests_walk_stops():
    s = Session(load("demand"), Config(mode="nested"))
    s.add_breakpoint("addr", s.image.labels["page_fault"], "page_fault")
    s.cont()
    assert monitor.nested_walk(s, 0x7FF000).splitlines() == [
        "va 0x007ff000: the nested walk of each guest-physical address (nested root mpn 0x1)",
        "  npde[0x000] = 0x00005027  [P W U A]",
        "    pde @ pa 0x00101004: npte[0x101] = 0x00008067  [P W U A D] -> ma 0x00008004",
        "    pte @ pa 0x00102ffc: npte[0x102] = 0x00009067  [P W U A D] -> ma 0x00009ffc",
        "  the guest's walk faults first: #PF, error code 0x0"]
    s = Session(load("demand"), Config(mode="nested"))
    s.step(3)                           # guest paging still off: pa = va
    assert monitor.nested_walk(s, 0x1000).splitlines()[1:] == [
        "  npde[0x000] = 0x00005027  [P W U A]",
        "    data @ pa 0x00001000: npte[0x001] = 0x00002027  [P W U A] -> ma 0x00002000"]


@pytest.mark.parametrize("line, message", [
    ("frob", "unknown monitor command 'frob' ('monitor help' lists them)"),
    ("walk", "usage: monitor walk VA"),
    ("walk nonsense", "bad address 'nonsense': 'nonsense' is not a number, register or symbol"),
    ("last-write xx 4", "usage: monitor last-write va|pa|ma ADDR"),
    ("disas 0xfffff000", "va 0xfffff000 is not mapped"),
])
def test_a_mistake_is_one_line(line, message):
    s = Session(load("demand"), Config(mode="shadow"))
    with pytest.raises(EmuError) as e:
        monitor.run(s, line)
    assert str(e.value) == message


NESTED_SESSION = """\
_start () at {src}:41
41\t    mov esp, KSTACK_TOP
Breakpoint 1 at 0x40005e: file {src}, line 371.

Breakpoint 1, user_main () at {src}:371
371\t    mov edx, ecx
the guest's walk of va 0x00480000 (CR3 = pa 0x00101000; a view: no A/D bit set)
  va 0x00480000 = pdx 0x001 | ptx 0x080 | off 0x000  (supervisor read)
    pde @ pa 0x00101004 = 0x00102027  [P W U A]
    pte @ pa 0x00102200 = 0x00201067  [P W U A D]
    -> pa 0x00201000 (frame 0x00201000, 4 KiB page; W U D)
va 0x00480000: the nested walk of each guest-physical address (nested root mpn 0x1)
  npde[0x000] = 0x00005027  [P W U A]
    pde @ pa 0x00101004: npte[0x101] = 0x00008067  [P W U A D] -> ma 0x00008004
    pte @ pa 0x00102200: npte[0x102] = 0x00009067  [P W U A D] -> ma 0x00009200
    data @ pa 0x00201000: npte[0x201] = 0x0000e067  [P W U A D] -> ma 0x0000e000
PMap: ppn 0x201 -> mpn 0xe (resident)
TLB: no entry for this page
page_fault:
  0x000011a0  0b 22                             mov edx, cr2
  0x000011a2  3e b0 2c 00 00 00 03 00 00 00     test dword [ebx + 0x2c], 3
  0x000011ac  69 22 00 00 00                    jne page_fault.user
last-write va 0x00480000 (ma 0x0000e000): 0x00000000 -> 0x000003e8 by the guest, cycle \
167,317, after 9,154 instructions, eip 0x00400036 <user_main.fill+0xf> (demand.s:361: \
mov [HEAP + edx], eax) [nested, cpl 3]
the PMap of vm0 · 19 of 4,096 guest pages backed (the rest unbacked: they read as zeros)
ppn                mpn        pages   state
──────────────────────────────────────────────
0x1-0x2       ->   0x2-0x3    2       resident
0x7f          ->   0x6        1       resident
0x100-0x104   ->   0x7-0xb    5       resident
0x200-0x209   ->   0xd-0x16   10      resident
0x400         ->   0x4        1       resident
machine memory: 22 of 5,120 pages in use: 19 by vm0, 3 by the VMM (shadow or nested tables)
last allocation: ppn 0x209 -> mpn 0x16 (zeroed), at cycle 488,869
error: unknown monitor command 'frob' ('monitor help' lists them)
error: usage: monitor walk VA
Kill the program being debugged? (y or n) [answered Y; input not from terminal]
[Inferior 1 (Remote target) killed]
"""


def test_walk_says_when_the_host_took_a_tlb_entrys_page():
    """A TLB entry the host detached (``Mmu.detach_pn``) has no machine page
    until the guest uses it again: ``monitor walk`` names the guest page."""
    s = at_sum("shadow")
    mmu = s.system.mmu
    entry = mmu.dtlb.probe(0x7f)
    va, mpn = entry.vpn << 12, entry.pn
    gpn = next(p for p, m in s.system.vmm.pmap.mpn_of.items() if m == mpn)
    assert monitor.walk(s, va).splitlines()[-1] == (
        f"TLB: dtlb: va {va:#010x} -> pn {mpn:#x} (WsD)")
    mmu.detach_pn(mpn, gpn)
    assert monitor.walk(s, va).splitlines()[-1] == (
        f"TLB: dtlb: va {va:#010x} -> ppn {gpn:#x}, page taken by the host (WsD)")
    mmu.reattach(0x7f, gpn, mpn, shared=True)
    assert monitor.walk(s, va).splitlines()[-1] == (
        f"TLB: dtlb: va {va:#010x} -> pn {mpn:#x}, shared: reads only (WsD)")
