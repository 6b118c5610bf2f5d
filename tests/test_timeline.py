"""``emu run --timeline``: Chrome's trace-event format, as the Perfetto UI
and chrome://tracing read it.

The file is checked against the format's documented fields (the "Trace
Event Format" document: ``ph``, ``ts``, ``dur``, ``pid``, ``tid``,
``name``, ``cat``, ``args``; ``s`` for instant events; the ``M`` metadata
events ``process_name``, ``thread_name`` and their sort indexes), slices on
one track must nest, and what it shows is counted against the trace
events of the same run.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from emu.cli import main
from emu.multi import build
from emu.programs import assemble_file, resolve
from emu.system import Config, System
from emu.timeline import PROCESS_TID, Timeline, document

METADATA = {"process_name": "name", "thread_name": "name", "process_sort_index": "sort_index",
            "thread_sort_index": "sort_index"}


def validate(doc: dict) -> None:
    """The documented fields of each event, and the nesting of slices."""
    assert set(doc) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] in ("ms", "ns")
    assert isinstance(doc["otherData"], dict)
    named_pids, named_tracks, used = set(), set(), set()
    for ev in doc["traceEvents"]:
        assert isinstance(ev["name"], str) and ev["name"]
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        ph = ev["ph"]
        if ph == "M":
            assert set(ev) == {"name", "ph", "pid", "tid", "args"}
            key = METADATA[ev["name"]]
            assert set(ev["args"]) == {key}
            assert isinstance(ev["args"][key], str if key == "name" else int)
            if ev["name"] == "process_name":
                named_pids.add(ev["pid"])
            if ev["name"] == "thread_name":
                named_tracks.add((ev["pid"], ev["tid"]))
            continue
        assert ph in ("X", "i"), ph
        assert isinstance(ev["ts"], int) and ev["ts"] >= 0
        assert isinstance(ev["cat"], str) and isinstance(ev["args"], dict)
        if ph == "X":
            assert set(ev) == {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"}
            assert isinstance(ev["dur"], int) and ev["dur"] >= 0
        else:
            assert set(ev) == {"name", "ph", "s", "ts", "pid", "tid", "cat", "args"}
            assert ev["s"] in ("g", "p", "t")
        used.add((ev["pid"], ev["tid"]))
    assert used <= named_tracks
    assert {pid for pid, _ in used} <= named_pids
    # Slices on a track nest: each ends before the one holding it ends.
    tracks: dict = {}
    for ev in doc["traceEvents"]:
        if ev["ph"] == "X":
            tracks.setdefault((ev["pid"], ev["tid"]), []).append(ev)
    for slices in tracks.values():
        stack: list[dict] = []
        for ev in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= ev["ts"]:
                stack.pop()
            if stack:
                outer = stack[-1]
                assert ev["ts"] + ev["dur"] <= outer["ts"] + outer["dur"], (outer, ev)
            stack.append(ev)


def recorded(program: str, **config):
    system = System(assemble_file(resolve(program)), Config(**config))
    events: list = []
    timeline = Timeline(1, program, system.config.costs)
    system.bus.subscribe(events.append)
    system.bus.subscribe(timeline)
    result = system.run()
    return document([timeline]), events, result


def slices(doc, cat=None, tid=None):
    return [e for e in doc["traceEvents"] if e["ph"] == "X"
            and (cat is None or e["cat"] == cat) and (tid is None or e["tid"] == tid)]


@pytest.mark.parametrize("mode,policy", [("shadow", "trace-cache"), ("shadow", "oos-drop"),
                                         ("nested", "trace-cache"), ("native", "trace-cache")])
def test_the_timeline_is_valid_and_shows_every_exit_and_step(mode, policy):
    doc, events, result = recorded("demand", mode=mode, shadow_policy=policy)
    validate(doc)
    exits = slices(doc, "vm_exit")
    trace_exits = [e for e in events if e.kind == "vm_exit"]
    assert [(e["ts"], e["args"]["reason"]) for e in sorted(exits, key=lambda e: e["ts"])] == [
        (e.cycle, e.data["reason"]) for e in trace_exits]
    if mode != "native":
        assert len(exits) == sum(result.stats["vmm"]["exits"].values())
    ends = [e["ts"] + e["dur"] for e in slices(doc)]
    assert max(ends, default=0) <= result.cycles
    # every VMM step is a slice inside the exit it serves, named with its step
    steps = slices(doc, "vmm")
    kinds = Counter(e.kind for e in events if e.kind in ("guest_walk", "shadow_fill",
                                                         "nested_fill", "pmap_lookup",
                                                         "emulate", "vm_entry"))
    named = Counter(e["name"] for e in steps)
    assert named["step 2: guest walk"] == kinds["guest_walk"]
    assert named["step 4: shadow fill"] == kinds["shadow_fill"]
    assert named["step 4: nested fill"] == kinds["nested_fill"]
    assert named["step 3: PMap lookup"] == kinds["pmap_lookup"]
    assert named["step 4: emulate the write"] == kinds["emulate"]
    assert sum(n for name, n in named.items() if name.endswith("VM entry")) == kinds["vm_entry"]
    for s in steps:
        if "step" in s["args"]:
            assert s["name"].startswith(f"step {s['args']['step']}: ")
        assert any(x["ts"] <= s["ts"] and s["ts"] + s["dur"] <= x["ts"] + x["dur"]
                   for x in exits if x["tid"] == s["tid"])
    instants = Counter(e["name"] for e in doc["traceEvents"] if e["ph"] == "i")
    faulted = sum(1 for e in events if e.kind in ("shadow_walk", "nested_walk") and e.step == 1)
    assert instants["step 1: the hardware walk faults"] == faulted
    assert instants["step 6: TLB fill"] == sum(1 for e in events
                                               if e.kind == "tlb_fill" and e.step == 6)
    delivered = sum(1 for e in events if e.kind == "deliver" and e.data.get("source") == "fault")
    assert sum(n for k, n in instants.items() if k.startswith("guest fault delivered")) == \
        delivered


def test_guest_processes_are_the_stretches_of_one_guest_cr3():
    doc, events, result = recorded("demand")
    procs = sorted(slices(doc, "guest_process"), key=lambda e: e["ts"])
    assert {e["tid"] for e in procs} == {PROCESS_TID}
    loads = [e for e in events if e.kind == "cr3_load"]
    changes = [e for i, e in enumerate(loads)
               if i == 0 or e.data["guest_cr3"] != loads[i - 1].data["guest_cr3"]]
    assert [(p["ts"], p["args"]["guest_cr3"]) for p in procs] == [
        (e.cycle, e.data["guest_cr3"]) for e in changes]
    for a, b in zip(procs, procs[1:]):
        assert a["ts"] + a["dur"] == b["ts"]           # one after the other, no gap
    names = {(e["tid"], e["args"]["name"]) for e in doc["traceEvents"]
             if e["name"] == "thread_name"}
    assert names == {(0, "vCPU 0"), (PROCESS_TID, "vCPU 0: guest processes (CR3)")}


def test_nested_and_native_have_no_process_track():
    for mode in ("nested", "native"):
        doc, _, _ = recorded("demand", mode=mode)
        assert not slices(doc, "guest_process")
        assert {e["tid"] for e in doc["traceEvents"]} == {0}


def test_the_cli_writes_one_process_per_vm(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["run", "demand", "hello", "--quiet", "--timeline", str(out)]) == 0
    doc = json.loads(out.read_text())
    validate(doc)
    names = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e["name"] == "process_name"}
    assert names == {1: "demand: demand (shadow)", 2: "hello: hello (shadow)"}
    assert doc["otherData"]["programs"] == ["demand", "hello"]
    assert doc["otherData"]["clock"].startswith("simulated cycles")
    # the same exits as each VM's own trace
    host, systems = build([assemble_file(resolve("demand")), assemble_file(resolve("hello"))],
                          ["demand", "hello"], Config(share_interval=200_000,
                                                      machine_mib=2 * (Config().machine_bytes
                                                                       >> 20)))
    counts = {s.name: Counter() for s in systems}
    for s in systems:
        s.bus.subscribe(lambda ev, c=counts[s.name]: c.update([ev.kind]))
    host.start()
    host.env.run(until=host.env.all_of([s.start() for s in systems]))
    for pid, name in ((1, "demand"), (2, "hello")):
        assert len([e for e in slices(doc, "vm_exit") if e["pid"] == pid]) == \
            counts[name]["vm_exit"]


def test_the_cli_timeline_of_one_run(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["run", "hello", "--mode", "nested", "--quiet", "--timeline", str(out)]) == 0
    doc = json.loads(out.read_text())
    validate(doc)
    assert doc["otherData"]["mode"] == "nested" and doc["otherData"]["program"] == "hello"
    assert Counter(e["args"]["reason"] for e in slices(doc, "vm_exit")) == {"npf": 2, "io": 28}


def test_the_validator_refuses_what_a_viewer_would_misdraw():
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "vm"}},
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "vCPU 0"}}]

    def doc(*events):
        return {"traceEvents": meta + list(events), "displayTimeUnit": "ns", "otherData": {}}

    def x(ts, dur, **extra):
        return {"name": "s", "ph": "X", "ts": ts, "dur": dur, "pid": 1, "tid": 0, "cat": "c",
                "args": {}, **extra}
    validate(doc(x(0, 10), x(2, 3), x(10, 5)))                     # nested, then after
    for bad in (doc(x(0, 10), x(5, 10)),                           # overlapping
                doc(x(0, -1)),                                     # negative duration
                doc({k: v for k, v in x(0, 1).items() if k != "dur"}),
                doc(x(0, 1, tid=7)),                               # a track with no name
                doc({"name": "i", "ph": "i", "ts": 0, "pid": 1, "tid": 0, "cat": "c",
                     "args": {}, "s": "x"})):
        with pytest.raises((AssertionError, KeyError)):
            validate(bad)
