"""Limits: big guests, measured.  Prints, for each mode, the host time and the
peak host memory (``ru_maxrss`` of a process that does only that run) of

* a guest touching PAGES pages (default 100,000: 390 MiB) through real
  4 KiB page tables: it identity-maps its RAM, writes one dword in each page,
  then reads them all back and powers off with status 0 if the sum is right;
* a guest of 1 GiB of guest-physical memory that touches 8 pages spread
  over it (sparse use: memory follows what is touched, not the RAM size).

    python benchmarks/limits.py [--pages N] [--modes native,shadow,nested]

Each run is a fresh ``python`` process (``--child``), so its peak memory is
its own; the interpreter and the emulator's modules alone take the
"baseline" figure printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PAGE = 4096
BASE = 0x400000                 # the first touched page (tables lie below)
PGDIR = 0x100000
PT_BASE = 0x101000              # page tables, one after another
MODES = ("native", "shadow", "nested")


def touch_kernel(pages: int) -> tuple[str, int]:
    """(source, guest RAM in MiB) of a kernel that maps and touches ``pages``
    pages with 4 KiB pages, and checks what it wrote."""
    mapped = BASE // PAGE + pages                  # identity-mapped pages
    tables = -(-mapped // 1024)
    assert PT_BASE + tables * PAGE <= BASE, "too many pages for the table area"
    mem_mib = -(-(BASE + pages * PAGE) // (1 << 20))
    want = pages * (pages - 1) // 2 & 0xFFFFFFFF
    source = f"""; touch {pages:,} pages through 4 KiB page tables, then read them back
%include "kernel.inc"
org 0x1000
_start:
    mov esp, 0x80000
    mov ecx, 0                      ; PTE j maps page j (the tables are contiguous)
.pte:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [{PT_BASE:#x} + ecx*4], eax
    inc ecx
    cmp ecx, {mapped}
    jne .pte
    mov ecx, 0
.pde:
    mov eax, ecx
    shl eax, 12
    add eax, {PT_BASE:#x} | PTE_P | PTE_W
    mov [{PGDIR:#x} + ecx*4], eax
    inc ecx
    cmp ecx, {tables}
    jne .pde
    mov eax, {PGDIR:#x}
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ecx, 0                      ; write i into page i
    mov edi, {BASE:#x}
.touch:
    mov [edi], ecx
    add edi, PAGE_SIZE
    inc ecx
    cmp ecx, {pages}
    jne .touch
    mov ecx, 0                      ; read them back
    mov edi, {BASE:#x}
    mov ebx, 0
.sum:
    add ebx, [edi]
    add edi, PAGE_SIZE
    inc ecx
    cmp ecx, {pages}
    jne .sum
    mov eax, 0
    cmp ebx, {want:#x}
    je .done
    mov eax, 1
.done:
    out POWER, eax
"""
    return source, max(mem_mib, 1)


# 8 dwords spread over 1 GiB: with paging off a linear address is physical.
SPARSE_ADDRESSES = [0x100000 + i * (0x3FF00000 // 8 // PAGE * PAGE) for i in range(8)] \
    + [0x3FFFFFFC]


def sparse_kernel() -> tuple[str, int]:
    """(source, 1024): writes and reads back 9 dwords spread over 1 GiB."""
    stores = "\n".join(f"    mov dword [{a:#x}], {i + 1}" for i, a in
                       enumerate(SPARSE_ADDRESSES))
    loads = "\n".join(f"    add eax, [{a:#x}]" for a in SPARSE_ADDRESSES)
    n = len(SPARSE_ADDRESSES)
    return f"""; 1 GiB of RAM, {n} dwords touched all over it
%include "kernel.inc"
org 0x1000
_start:
    mov esp, 0x80000
{stores}
    mov eax, 0
{loads}
    sub eax, {n * (n + 1) // 2}     ; 0 when every dword read back
    out POWER, eax
""", 1024


def run_one(source: str, mem_mib: int, mode: str) -> dict:
    """Run ``source`` in this process; the figures of that run."""
    from emu import programs
    from emu.asm import assemble
    from emu.system import Config, System
    image = assemble(source, "<limits>", include_dirs=[str(programs.include_dir())])
    system = System(image, Config(mode=mode, mem_mib=mem_mib, max_cycles=1 << 40))
    t0 = time.perf_counter()
    r = system.run()
    digest = r.guest_memory_sha256  # (the hash of all guest RAM, computed when read)
    seconds = time.perf_counter() - t0
    if mode == "native":
        backed = system.guest.touched()         # guest RAM pages that exist
    else:                                       # machine pages the VMM gave out
        backed = r.stats["vmm"]["machine"]["peak_allocated"]
    return {"mode": mode, "outcome": r.outcome, "exit_status": r.exit_status,
            "seconds": round(seconds, 2), "instructions": r.instructions,
            "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "backed_pages": backed, "memory_sha256": digest,
            "hidden_faults": r.stats.get("vmm", {}).get("faults", {}).get("hidden")}


def child(kind: str, mode: str, pages: int) -> None:
    if kind == "baseline":
        from emu.system import System  # noqa: F401  (the modules a run loads)
        print(json.dumps({"maxrss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
        return
    source, mem_mib = touch_kernel(pages) if kind == "touch" else sparse_kernel()
    print(json.dumps(run_one(source, mem_mib, mode)))


def spawn(*argv: str) -> dict:
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *argv],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"limits: the child {' '.join(argv)} failed: "
                         f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(p.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=100_000, help="pages the big guest touches")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--child", nargs=3, metavar=("KIND", "MODE", "PAGES"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    modes = [m for m in args.modes.split(",") if m]
    if not 1 <= args.pages <= 250_000 or any(m not in MODES for m in modes):
        ap.error("--pages must be 1..250000 and --modes a list of native, shadow, nested")
    base = spawn("baseline", "native", "0")
    print(f"baseline (python + emu modules): {base['maxrss_mib']} MiB peak")
    _, mem = touch_kernel(args.pages)
    print(f"\n{args.pages:,} pages touched ({args.pages * PAGE >> 20} MiB; guest RAM "
          f"{mem} MiB, 4 KiB pages):")
    print(f"  {'mode':8} {'status':>6} {'host s':>7} {'peak MiB':>9} {'pages backed':>13} "
          f"{'instructions':>13} {'hidden faults':>14}")
    failed = False
    for mode in modes:
        r = spawn("touch", mode, str(args.pages))
        failed |= (r["outcome"], r["exit_status"]) != ("poweroff", 0)
        print(f"  {mode:8} {r['exit_status']!s:>6} {r['seconds']:7.2f} {r['maxrss_mib']:9,} "
              f"{r['backed_pages']:13,} {r['instructions']:13,} "
              f"{format(r['hidden_faults'], ',') if r['hidden_faults'] else '-':>14}")
    print("\n1 GiB of guest RAM, 9 dwords touched over it (sparse):")
    for mode in modes:
        r = spawn("sparse", mode, "0")
        failed |= (r["outcome"], r["exit_status"]) != ("poweroff", 0)
        print(f"  {mode:8} status {r['exit_status']}, {r['seconds']:.2f} s (the result's "
              f"hash of all 1 GiB included), peak {r['maxrss_mib']:,} MiB, "
              f"{r['backed_pages']} pages backed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
