"""The benchmark: prints the figures the project promises, measured now.

    python benchmarks/run.py [--quick]

* guest instructions per host second on the compute-bound loop
  (benchmarks/loop.s), natively with paging off, and the rate of py65 (a
  pure-Python 6502 emulator) on an equivalent loop in the same run;
* the same loop with paging on and its pages hitting in the TLB
  (benchmarks/loop_paging.s), and with a TLB of one entry (every access
  misses: the code page and the data page evict each other);
* host time of shadow mode against native on the TLB-hit loop;
* hidden faults handled per host second (benchmarks/touch.s under shadow):
  the VMM's handler alone (host time inside its exit handler, steps 2-5),
  and end to end (the whole run: the guest, the hardware's faulting walk,
  the VM exit and entry, the restart).

Each figure is the median of several runs (host time is noisy); the ratios
are computed from the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from emu.cli import load  # noqa: E402
from emu.system import Config, System  # noqa: E402


def _median_run(path: str, config: Config, repeat: int):
    """Median host seconds of the simulation (``Result.host_seconds``: the
    run itself, not the final hash of guest memory) and the last result."""
    image = load(os.path.join(HERE, path))
    times, result = [], None
    for _ in range(repeat):
        result = System(image, config).run()
        times.append(result.host_seconds)
        assert result.outcome == "poweroff", result.message
    return statistics.median(times), result


def handler_rate(path: str, config: Config, repeat: int) -> tuple[float, int]:
    """Hidden faults per host second spent inside the VMM's exit handler
    (steps 2-5), measured around each call of the monitor (``enter``, and
    each resumption of ``serve`` for a handler that waits)."""
    image = load(os.path.join(HERE, path))
    rates, hidden = [], 0
    for _ in range(repeat):
        system = System(image, config)
        spent = [0.0]
        enter, serve = system.vmm.enter, system.vmm.serve

        def timed_enter(exit, enter=enter, spent=spent):
            t0 = time.perf_counter()
            try:
                return enter(exit)
            finally:
                spent[0] += time.perf_counter() - t0

        def timed_serve(serve=serve, spent=spent):
            gen, value = serve(), None
            while True:
                t0 = time.perf_counter()
                try:
                    event = gen.send(value)
                except StopIteration as done:
                    spent[0] += time.perf_counter() - t0
                    return done.value
                spent[0] += time.perf_counter() - t0
                value = yield event
        # (the vCPU hands each exit to ``enter``, and to ``serve`` the ones
        # whose handler waits for simulated time)
        system.vmm.enter, system.vmm.serve = timed_enter, timed_serve
        result = system.run()
        hidden = result.stats["vmm"]["faults"]["hidden"]
        rates.append(result.stats["vmm"]["exits_total"] / spent[0])
    return statistics.median(rates), hidden


def py65_rate(iterations: int, repeat: int) -> float:
    """Instructions per second of py65 on a loop like loop.s: per iteration
    two loads, a store, two ALU operations and a branch."""
    from py65.devices.mpu6502 import MPU
    program = bytes([
        0xA2, 0x00,        # ldx #0
        0xA0, 0x00,        # ldy #0
        0x18,              # loop: clc
        0xA5, 0x10,        #   lda $10
        0x65, 0x11,        #   adc $11
        0x85, 0x11,        #   sta $11
        0x49, 0x55,        #   eor #$55
        0xCA,              #   dex
        0xD0, 0xF5,        #   bne loop
    ])
    rates = []
    for _ in range(repeat):
        mpu = MPU()
        mpu.memory[0x200:0x200 + len(program)] = program
        mpu.pc = 0x200
        steps = iterations * 6
        t0 = time.perf_counter()
        for _ in range(steps):
            mpu.step()
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else 3
    rows = []

    t_loop, r = _median_run("loop.s", Config(mode="native"), repeat)
    rate = r.instructions / t_loop
    p65 = py65_rate(200_000, repeat)
    rows += [("loop.s, native, paging off", f"{rate / 1e6:.2f} M instr/s"),
             ("py65 on the equivalent 6502 loop", f"{p65 / 1e6:.2f} M instr/s"),
             ("  ratio emu / py65", f"{rate / p65:.2f}x")]

    t_pg, r = _median_run("loop_paging.s", Config(mode="native"), repeat)
    rate_pg = r.instructions / t_pg
    dtlb = r.stats["mmu"]["dtlb"]
    rows += [("loop_paging.s, native, TLB hits", f"{rate_pg / 1e6:.2f} M instr/s"),
             ("  ratio emu / py65", f"{rate_pg / p65:.2f}x"),
             ("  dtlb hits / misses", f"{dtlb['hits']:,} / {dtlb['misses']:,}")]

    one = Config(mode="native", tlb_entries=1, tlb_ways=1, tlb_kind="unified", tlb_large=1)
    t_miss, r = _median_run("loop_paging.s", one, repeat)
    tlb = r.stats["mmu"]["tlb"]
    rows += [("loop_paging.s, a 1-entry TLB (all miss)",
              f"{r.instructions / t_miss / 1e6:.2f} M instr/s"),
             ("  tlb misses / walks", f"{tlb['misses']:,} / {r.stats['mmu']['walks']:,}")]

    t_sh, r = _median_run("loop_paging.s", Config(mode="shadow"), repeat)
    rows += [("loop_paging.s, shadow (trace-cache)",
              f"{r.instructions / t_sh / 1e6:.2f} M instr/s"),
             ("  host time shadow / native", f"{t_sh / t_pg:.3f}x")]

    touch = Config(mode="shadow", mem_mib=128)
    t_touch, r = _median_run("touch.s", touch, repeat)
    hidden = r.stats["vmm"]["faults"]["hidden"]
    rate_h, _ = handler_rate("touch.s", touch, repeat)
    rows += [("touch.s, shadow: hidden faults", f"{hidden:,}"),
             ("  handled by the VMM per host second", f"{rate_h:,.0f}"),
             ("  end to end (guest + hardware + VMM)", f"{hidden / t_touch:,.0f} per second")]

    width = max(len(k) for k, _ in rows)
    print(f"emu benchmark (median of {repeat} run{'s' if repeat > 1 else ''}, "
          f"Python {sys.version.split()[0]})")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
