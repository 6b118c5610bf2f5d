"""A run as a timeline: Chrome's trace-event format, which the Perfetto UI
(ui.perfetto.dev) and chrome://tracing open.

    emu run demand --timeline demand.json

The clock is simulated time: one microsecond of the viewer is one cycle
(``ts`` and ``dur`` are cycles).  Each VM is a process (``pid``), with
tracks (``tid``) of its own:

* ``vCPU N``: every VM exit as a slice from the exit to the VM entry (an
  exit that ends without one, port I/O or ``hlt``, lasts the transition
  and the VMM work the cost model charges for it), and inside it a slice
  per VMM step (the guest walk, the classification, the PMap, the shadow
  fill, the emulation, the VM entry) named and ``args``-tagged with its
  step (1-6); a fault taken while the VMM emulates an instruction nests
  inside the exit being handled.  Step 1 (the walk that faulted) and step
  6 (the restart's TLB fill), and the faults the hardware delivers to the
  guest itself, are instant events.
* ``guest processes (CR3)``: under shadow paging, the guest's CR3 loads
  exit, so the address space that runs is known: a slice per stretch of
  one guest CR3 value.  (Natively and under nested paging a CR3 load does
  not reach the trace; the track is left out.)

Slices on a track nest: each ends before the one that holds it.  The file
is a JSON object: ``traceEvents``, ``displayTimeUnit`` and ``otherData``
(the program, the mode, what the clock counts).
"""

from __future__ import annotations

import json

from .cost import DEFAULT_COSTS, CostModel
from .trace import Event

STEP_NAMES = {
    "guest_walk": "guest walk", "pmap_lookup": "PMap lookup", "shadow_fill": "shadow fill",
    "nested_fill": "nested fill", "emulate": "emulate the write", "inject": "inject #PF",
    "vm_entry": "VM entry", "cr3_load": "CR3 load", "invlpg": "INVLPG",
}
PROCESS_TID = 1000          # + vCPU: the guest-processes track of each vCPU
# Exits answered without a VM entry, and the VMM's cost of each beyond the exit.
NO_ENTRY = {"io": lambda costs: costs.vmm_io, "hlt": lambda costs: 0}


class Timeline:
    """Collects the trace events of one VM (``pid``) into trace-event slices."""

    def __init__(self, pid: int = 1, name: str = "vm0", costs: CostModel = DEFAULT_COSTS):
        self.pid = pid
        self.name = name
        self.costs = costs
        self.events: list[dict] = []
        self.vcpus: set[int] = set()
        self.open: dict[int, list[dict]] = {}     # vcpu -> exits being handled, innermost last
        self.mark: dict[int, int] = {}            # vcpu -> where the current step began
        self.process: dict[int, tuple[int, int]] = {}   # vcpu -> (guest cr3, since)
        self.end = 0

    # --- the bus ----------------------------------------------------------------------
    def __call__(self, ev: Event) -> None:
        v = ev.vcpu
        self.vcpus.add(v)
        self.end = max(self.end, ev.cycle)
        self._close_tail(v, ev.cycle)
        stack = self.open.setdefault(v, [])
        kind = ev.kind
        if kind == "vm_exit":
            exit_ = {"name": f"VM exit: {ev.data.get('reason')}", "ph": "X", "ts": ev.cycle,
                     "pid": self.pid, "tid": v, "cat": "vm_exit",
                     "args": {k: ev.data[k] for k in ("reason", "eip", "error_code", "gpa")
                              if ev.data.get(k) is not None}}
            if ev.va is not None:
                exit_["args"]["va"] = ev.va
            if ev.step is not None:
                exit_["args"]["step"] = ev.step
            stack.append(exit_)
            self.mark[v] = ev.cycle
            return
        if kind in ("shadow_walk", "nested_walk") and ev.step == 1:
            self._instant(ev, "step 1: the hardware walk faults", "step1")
            return
        if kind == "tlb_fill" and ev.step == 6:
            self._instant(ev, "step 6: TLB fill", "step6")
            return
        if kind == "deliver" and ev.data.get("source") == "fault":
            self._instant(ev, f"guest fault delivered: vector {ev.data.get('vector')}",
                          "deliver")
            return
        if kind == "cr3_load":
            self._switch_process(v, ev.data.get("guest_cr3"), ev.cycle)
        if kind == "run_end":
            self.finish()
            return
        if not stack:
            return
        if kind in STEP_NAMES or kind.endswith("_fault"):
            begin = self.mark.get(v, ev.cycle)
            name = STEP_NAMES.get(kind) or kind.replace("_", " ")
            args = {"step": ev.step} if ev.step is not None else {}
            if ev.va is not None:
                args["va"] = ev.va
            prefix = f"step {ev.step}: " if ev.step is not None else ""
            self.events.append({"name": prefix + name, "ph": "X", "ts": begin,
                                "dur": ev.cycle - begin, "pid": self.pid, "tid": v,
                                "cat": "vmm", "args": args})
            self.mark[v] = ev.cycle
            if kind == "vm_entry":
                self._close(v, ev.cycle)

    def _instant(self, ev: Event, name: str, cat: str) -> None:
        args = {"step": ev.step} if ev.step is not None else {}
        if ev.va is not None:
            args["va"] = ev.va
        self.events.append({"name": name, "ph": "i", "s": "t", "ts": ev.cycle,
                            "pid": self.pid, "tid": ev.vcpu, "cat": cat, "args": args})

    def _close(self, v: int, cycle: int) -> None:
        exit_ = self.open[v].pop()
        exit_["dur"] = cycle - exit_["ts"]
        self.events.append(exit_)
        self.mark[v] = cycle

    def _close_tail(self, v: int, cycle: int) -> None:
        """Exits that end without a VM entry (port I/O, ``hlt``) last the
        transition and the VMM work the cost model charges for them; they
        are over before anything else happens on their vCPU."""
        stack = self.open.get(v, [])
        while stack and stack[-1]["args"].get("reason") in NO_ENTRY:
            exit_ = stack[-1]
            tail = exit_["ts"] + self.costs.vm_exit + NO_ENTRY[exit_["args"]["reason"]](
                self.costs)
            self._close(v, max(exit_["ts"], min(tail, cycle)))

    def _switch_process(self, v: int, cr3, cycle: int) -> None:
        if cr3 is None:
            return
        old = self.process.get(v)
        if old is not None and old[0] == cr3:
            return
        if old is not None:
            self._process_slice(v, old, cycle)
        self.process[v] = (cr3, cycle)

    def _process_slice(self, v: int, proc: tuple[int, int], cycle: int) -> None:
        cr3, since = proc
        self.events.append({"name": f"CR3 {cr3:#010x}", "ph": "X", "ts": since,
                            "dur": cycle - since, "pid": self.pid, "tid": PROCESS_TID + v,
                            "cat": "guest_process", "args": {"guest_cr3": cr3}})

    def finish(self) -> None:
        """The run ended: close what is open."""
        for v, stack in self.open.items():
            while stack:
                self._close(v, max(self.end, stack[-1]["ts"]))
        for v, proc in list(self.process.items()):
            self._process_slice(v, proc, max(self.end, proc[1]))
        self.process.clear()

    # --- output -----------------------------------------------------------------------
    def metadata(self) -> list[dict]:
        out = [{"name": "process_name", "ph": "M", "pid": self.pid, "tid": 0,
                "args": {"name": self.name}},
               {"name": "process_sort_index", "ph": "M", "pid": self.pid, "tid": 0,
                "args": {"sort_index": self.pid}}]
        for v in sorted(self.vcpus):
            out.append({"name": "thread_name", "ph": "M", "pid": self.pid, "tid": v,
                        "args": {"name": f"vCPU {v}"}})
            out.append({"name": "thread_sort_index", "ph": "M", "pid": self.pid, "tid": v,
                        "args": {"sort_index": 2 * v}})
        if any(e.get("cat") == "guest_process" for e in self.events):
            for v in sorted(self.vcpus):
                out.append({"name": "thread_name", "ph": "M", "pid": self.pid,
                            "tid": PROCESS_TID + v,
                            "args": {"name": f"vCPU {v}: guest processes (CR3)"}})
                out.append({"name": "thread_sort_index", "ph": "M", "pid": self.pid,
                            "tid": PROCESS_TID + v, "args": {"sort_index": 2 * v + 1}})
        return out


def document(timelines: list[Timeline], other: dict | None = None) -> dict:
    """The trace-event JSON object for one or more VMs' timelines."""
    events: list[dict] = []
    for t in timelines:
        t.finish()
        events += t.metadata()
        events += sorted(t.events, key=lambda e: (e["tid"], e["ts"], -e.get("dur", 0)))
    data = {"clock": "simulated cycles: one microsecond of the viewer is one cycle"}
    data.update(other or {})
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": data}


def dumps(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":")) + "\n"
