"""Subscribe to the trace bus and print each hidden and true fault of a run
with its six steps (docs/design.md): the events carry the step number."""

from emu import Config, System, assemble_file, find_program
from emu.programs import include_dir

image = assemble_file(find_program("demand"), include_dirs=[include_dir()])
system = System(image, Config(mode="shadow"))

faults = []          # one list of events per #PF exit
current = None


def on_event(ev):
    global current
    if ev.step == 1:                        # step 1 opens a new fault
        current = [ev]
        faults.append(current)
    elif current is not None and ev.step is not None:
        current.append(ev)
        if ev.kind == "tlb_fill" or (ev.kind == "vm_entry" and any(
                e.kind == "true_fault" for e in current)):
            current = None                  # step 6 (or the injection) closes it


system.bus.subscribe(on_event)
result = system.run()

shown = {"hidden": 0, "true": 0}
for events in faults:
    kinds = [e.kind for e in events]
    kind = "true" if "true_fault" in kinds else "hidden" if "hidden_fault" in kinds else None
    if kind is None or shown[kind] >= 2:    # two of each kind are enough
        continue
    shown[kind] += 1
    print(f"{kind} fault at va {events[0].va:#010x}:")
    for e in events:
        detail = {k: (hex(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                  for k, v in e.data.items() if k not in ("walk",)}
        print(f"  step {e.step}  {e.kind:<13} {detail}")
counts = result.stats["vmm"]["faults"]
print(f"in all: {counts['hidden']} hidden, {counts['true']} true, "
      f"{counts['tracing']} tracing faults; console output {len(result.console)} bytes")
