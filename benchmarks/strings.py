"""String instructions over 1 MiB, natively, against a Python bytearray copy.

    python benchmarks/strings.py [--quick]

Prints the host time of ``rep movsd`` and ``rep stosd`` over 1 MiB (paging
off, and paging on through 4 KiB pages), the time of a Python ``bytearray``
slice copy of 1 MiB measured in the same run, and their ratio (the target:
the rep at least 1/10 of the copy's speed, i.e. a ratio >= 0.10).

Each rep's time is the run's host time minus that of the same guest without
the measured instruction (both touch every page once first), over the
``TIMES`` times the guest runs it (a loop around it, in both guests), each
run the fastest of several (the least disturbed by other work on the host),
as the copy's is.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from emu.asm import assemble  # noqa: E402
from emu.system import Config, System  # noqa: E402

SIZE = 1 << 20
SRC, DST = 0x100000, 0x200000
TIMES = 16                      # each measured rep runs this many times in one run
PAGING = """
    mov edi, 0x1000             ; page directory at 0x1000, tables from 0x2000
    mov ecx, 1024
    mov eax, 0
    rep stosd
    mov ebx, 0                  ; four tables: va 0..16 MiB, identity
.tables:
    mov eax, ebx
    shl eax, 12
    add eax, 0x2003
    mov [0x1000 + ebx*4], eax
    inc ebx
    cmp ebx, 4
    jne .tables
    mov edi, 0x2000
    mov eax, 3
    mov ecx, 4096
.ptes:
    stosd
    add eax, 0x1000
    loop .ptes
    mov eax, 0x1000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


def _guest(measured: str, paging: bool) -> str:
    touch = (f"    mov edi, {SRC:#x}\n    mov ecx, {SIZE // 4}\n    rep stosd\n"
             f"    mov edi, {DST:#x}\n    mov ecx, {SIZE // 4}\n    rep stosd\n")
    again = (f"    mov ebx, {TIMES}\n.again:\n"
             f"    mov esi, {SRC:#x}\n    mov edi, {DST:#x}\n    mov ecx, {SIZE // 4}\n"
             "    mov eax, 0x5A5A5A5A\n")
    return "\n".join(["org 0x8000", "_start:", "    mov esp, 0x80000",
                      PAGING if paging else "", touch, again, measured,
                      "    dec ebx", "    jnz .again",
                      "    mov eax, 0", "    out 0xF4, eax", ""])


def _host_time(source: str, repeat: int) -> float:
    image = assemble(source, "<strings>")
    times = []
    for _ in range(repeat):
        r = System(image, Config(mode="native", mem_mib=16)).run()
        assert r.outcome == "poweroff", r.message
        times.append(r.host_seconds)
    return min(times)


def rep_time(insn: str, paging: bool, repeat: int) -> float:
    """One rep over 1 MiB: the guest runs it ``TIMES`` times over."""
    base = _host_time(_guest("", paging), repeat)
    return max(_host_time(_guest(f"    {insn}", paging), repeat) - base, 1e-9) / TIMES


def bytearray_copy_time(repeat: int) -> float:
    src, dst = bytearray(os.urandom(SIZE)), bytearray(SIZE)

    def copy():
        dst[0:SIZE] = src[0:SIZE]
    return min(timeit.repeat(copy, number=20, repeat=max(repeat, 3))) / 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 9
    py = bytearray_copy_time(repeat)
    print(f"emu string benchmark: 1 MiB, native, fastest of {repeat} runs "
          f"(Python {sys.version.split()[0]})")
    print(f"  bytearray slice copy                  {py * 1e3:8.3f} ms  "
          f"({SIZE / py / 1e9:.2f} GB/s)")
    for paging in (False, True):
        for insn in ("rep movsd", "rep stosd"):
            t = rep_time(insn, paging, repeat)
            label = f"{insn}, paging {'on (4 KiB pages)' if paging else 'off'}"
            print(f"  {label:<37} {t * 1e3:8.3f} ms  ({SIZE / t / 1e9:.2f} GB/s)  "
                  f"ratio to the copy {py / t:.3f} (target >= 0.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
