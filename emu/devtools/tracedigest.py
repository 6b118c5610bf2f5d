"""Digests of every bundled guest's trace and result, to prove a refactor
changes no behaviour.

    python -m emu.devtools.tracedigest --record before.json
    ... change the code ...
    python -m emu.devtools.tracedigest --compare before.json

Each run (every bundled guest natively, under each shadow policy and under
nested paging, with the trace bus on; a few with the cycle clock, a small
TLB and invariant checks; and groups of VMs on a small machine that swap
and share) gives the SHA-256 of its JSON-lines trace and of its result
(console, registers, memory hash and every counter but host time).  The
compare mode prints the runs whose digests differ and exits 1 if any do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from .. import programs
from ..asm import assemble_file
from ..multi import build
from ..system import Config, System
from ..trace import JsonlWriter
from ..vmm.shadow import POLICIES


class _HashSink:
    """A file-like object that hashes what is written to it."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.events = 0

    def write(self, text: str) -> None:
        self.h.update(text.encode())
        self.events += 1


def _result_digest(result) -> str:
    data = result.to_json()
    data.pop("host_seconds", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _configs():
    yield "native", Config(mode="native")
    for policy in POLICIES:
        yield policy, Config(mode="shadow", shadow_policy=policy)
    yield "nested", Config(mode="nested")
    yield "shadow-cycles-tlb8", Config(mode="shadow", clock="cycles", tlb_entries=8,
                                       tlb_ways=2)
    yield "shadow-invariants", Config(mode="shadow", shadow_policy="oos-cache",
                                      check_invariants=True)


def _load(name: str):
    return assemble_file(programs.resolve(name), include_dirs=[programs.include_dir()])


def runs(quick: bool = False):
    """(run id, trace digest, result digest, events) of every run."""
    names = [n for n, _ in programs.catalogue()]
    for name in names:
        image = _load(name)
        for label, config in _configs():
            if quick and label not in ("native", "trace-cache", "nested"):
                continue
            sink = _HashSink()
            system = System(image, config)
            system.bus.subscribe(JsonlWriter(sink))
            result = system.run()
            yield f"{name}/{label}", sink.h.hexdigest(), _result_digest(result), sink.events
    groups = [("demand", "bigpages", "syscalls"), ("multiproc", "forkwait", "pager")]
    for group in groups:
        for mode, policy in (("shadow", "trace-cache"), ("shadow", "oos-drop"),
                             ("nested", "trace-cache")):
            config = Config(mode=mode, shadow_policy=policy, machine_mib=2,
                            swap_latency=2000, share_interval=20_000)
            images = [_load(n) for n in group]
            host, systems = build(images, list(group), config)
            sink = _HashSink()
            for s in systems:
                s.bus.subscribe(JsonlWriter(sink, s.name))
            host.start()
            procs = [s.start() for s in systems]
            host.env.run(until=host.env.all_of(procs))
            h = hashlib.sha256()
            for s in systems:
                h.update(_result_digest(s.result()).encode())
            h.update(json.dumps(host.stats(), sort_keys=True).encode())
            yield (f"{'+'.join(group)}/{mode}-{policy}", sink.h.hexdigest(), h.hexdigest(),
                   sink.events)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emu.devtools.tracedigest",
                                description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="FILE", help="write the digests of every run")
    g.add_argument("--compare", metavar="FILE", help="compare with digests recorded before")
    p.add_argument("--quick", action="store_true",
                   help="native, trace-cache and nested only, and the groups")
    args = p.parse_args(argv)
    if args.record:
        out = {rid: {"trace": t, "result": r, "events": n}
               for rid, t, r, n in runs(args.quick)}
        with open(args.record, "w") as fh:
            json.dump(out, fh, indent=1, sort_keys=True)
        print(f"{len(out)} runs recorded in {args.record}")
        return 0
    try:
        with open(args.compare) as fh:
            before = json.load(fh)
    except (OSError, ValueError) as e:
        print(f"tracedigest: cannot read {args.compare}: {e}", file=sys.stderr)
        return 2
    differ = same = 0
    for rid, t, r, n in runs(args.quick):
        old = before.get(rid)
        if old is None:
            continue
        if (old["trace"], old["result"]) != (t, r):
            differ += 1
            what = [w for w, a, b in (("trace", old["trace"], t), ("result", old["result"], r))
                    if a != b]
            print(f"DIFFERS {rid}: {' and '.join(what)} ({old['events']} -> {n} events)")
        else:
            same += 1
    print(f"{same} runs identical, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
