"""Snapshots: a run restored from any snapshot goes on exactly as the run
that was never interrupted.

For every bundled guest in every mode: a run to the end with its trace
(the JSON lines ``emu run --trace`` writes) and its result; the same run
again with snapshots taken; then runs restored from those snapshots, each
to the end.  The recorded run must equal the first one (taking snapshots
changes nothing), and each restored run must give the trace from its
snapshot on and the same result: console, registers, memory hash and
every counter but host time.
"""

from __future__ import annotations

import io
import pathlib

import pytest

from emu import programs
from emu.cli import build_parser, config_from, load
from emu.multi import build
from emu.system import MODES, System
from emu.timetravel import Recorder, SnapshotError, SnapshotStore, restore
from emu.trace import JsonlWriter
from emu.ui.session import Session
from emu.ui.story import describe

GUESTS = sorted(p.stem for p in pathlib.Path(programs.programs_dir()).glob("*.s"))


def program_config(name: str, mode: str, *extra: str) -> tuple:
    """The image and the configuration ``emu run NAME --mode MODE`` uses
    (the program's own ``; emu-options:`` included)."""
    path = programs.resolve(name)
    args = build_parser().parse_args(["run", path, *programs.default_options(path),
                                      "--mode", mode, *extra])
    return load(path), config_from(args)


def without_host_time(d):
    if isinstance(d, dict):
        return {k: without_host_time(v) for k, v in d.items() if k != "host_seconds"}
    return d


def without_trace_count(result: dict) -> dict:
    return {**result, "stats": {k: v for k, v in result["stats"].items()
                                if k != "trace_events"}}


def traced_run(system: System, jsonl: bool = False) -> tuple[dict, list, int]:
    """Run ``system`` to its end: (result, trace from here, events before).
    The trace is the events (immutable values compared field by field), or
    with ``jsonl`` the lines ``emu run --trace`` writes."""
    before = system.bus.count
    if jsonl:
        out = io.StringIO()
        system.bus.subscribe(JsonlWriter(out))
    else:
        events = []
        system.bus.subscribe(events.append)
    result = system.run()
    trace = out.getvalue().splitlines() if jsonl else events
    return without_host_time(result.to_json()), trace, before


def check_restores(image, config, fractions=(1 / 3, 2 / 3), jsonl=False,
                   baseline=True) -> Recorder:
    """Snapshots at ``fractions`` of the run; each restored and run on must
    give the rest of the trace and the result of the run that took them,
    which must be the run without snapshots (``baseline``: with its trace
    too; else its result, the plain ``emu run`` path where nobody listens)."""
    if not baseline:
        plain = without_host_time(System(image, config).run().to_json())
        insns = plain["instructions"]
    else:
        base, trace, _ = traced_run(System(image, config), jsonl)
        insns = base["instructions"]
    recorder = Recorder(at=[max(1, int(insns * f)) for f in fractions])
    system = System(image, config)
    recorder.attach(system)
    recorded, recorded_trace, _ = traced_run(system, jsonl)
    if baseline:
        assert recorded == base, "taking snapshots changed the run"
        assert recorded_trace == trace
    else:
        # The run without snapshots, where nobody listens (the plain ``emu run``):
        # the same but for the count of trace events.
        assert without_trace_count(recorded) == without_trace_count(plain)
    base, trace = recorded, recorded_trace
    # At the first batch from each point (natively a batch may be long).
    assert 1 <= len(recorder.store) <= len(fractions)
    for snap in recorder.store:
        restored, rest, before = traced_run(restore(snap), jsonl)
        assert snap.icount > 0 and before <= len(trace)
        assert rest == trace[before:], f"the trace differs after a restore at {snap.icount:,}"
        assert restored == base
    return recorder


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("guest", GUESTS)
def test_a_restored_run_goes_on_exactly_as_the_uninterrupted_one(guest, mode):
    check_restores(*program_config(guest, mode), fractions=(0.5,), baseline=False)


@pytest.mark.parametrize("mode", MODES)
def test_the_trace_file_is_byte_identical_after_a_restore(mode):
    check_restores(*program_config("demand", mode), fractions=(0.3, 0.7), jsonl=True)


@pytest.mark.parametrize("mode, options", [
    ("shadow", ["--shadow-policy", "oos-cache"]),
    ("shadow", ["--shadow-policy", "trace-drop", "--clock", "cycles"]),
    ("nested", ["--clock", "cycles", "--tlb-kind", "unified", "--tlb-policy", "random",
                "--seed", "9"]),
])
def test_policies_clocks_and_tlbs_restore_exactly(mode, options):
    check_restores(*program_config("demand", mode, *options), fractions=(0.3, 0.7))


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_swapping_and_sharing_restore_exactly(mode):
    """One VM on a machine too small for it: reclaim, swap-outs and swap-ins,
    and the sharing scan, whose next scan the restored host must know."""
    image, config = program_config("bigpages", mode, "--machine-mib", "4",
                                   "--swap-latency", "2000", "--share-interval", "30000",
                                   "--max-cycles", "5000000")
    recorder = check_restores(image, config, fractions=(0.5, 0.9), baseline=mode == "shadow")
    result = restore(recorder.store.last).run()
    assert result.outcome == "budget"
    assert result.stats["host"]["swap_outs"] > 100 and result.stats["host"]["scans"] > 5


def test_snapshots_are_taken_only_between_batches_of_the_vcpu():
    """Every batch start is a candidate (tracing faults emulate instructions
    inside the VMM: those batches are not); each snapshot restores exactly."""
    image, config = program_config("demand", "shadow")
    base, trace, _ = traced_run(System(image, config))
    recorder = Recorder(every=5)
    system = System(image, config)
    recorder.attach(system)
    traced_run(system)
    assert len(recorder.store) > 200
    assert system.vmm.faults["tracing"] > 0
    for snap in list(recorder.store)[::70]:
        restored, rest, before = traced_run(restore(snap))
        assert restored == base and rest == trace[before:]


def test_unchanged_pages_are_shared_between_snapshots():
    image, config = program_config("demand", "native")
    recorder = Recorder(every=5)
    system = System(image, config)
    recorder.attach(system)
    system.run()
    snaps = list(recorder.store)
    assert len(snaps) > 20
    for a, b in zip(snaps, snaps[1:]):
        for pn, data in b.pages.items():
            old = a.pages.get(pn)
            if old is not None and old == data:
                assert old is data              # one object, not a copy
                assert pn not in b.changed
            else:
                assert pn in b.changed
        assert set(a.pages) - set(b.pages) <= b.changed
    distinct = {id(d): len(d) for s in snaps for d in s.pages.values()}
    blobs = sum(len(s.blob) for s in snaps)
    assert recorder.store.size >= blobs + sum(distinct.values())
    assert sum(len(s.pages) for s in snaps) > 3 * len(distinct)   # most pages shared


def test_the_store_thins_out_old_snapshots_to_stay_in_its_budget():
    image, config = program_config("demand", "shadow")
    store = SnapshotStore(budget=400_000)
    recorder = Recorder(store, every=6)
    system = System(image, config)
    recorder.attach(system)
    system.run()
    assert store.taken > 60 and store.thinned > 0, store.stats()
    assert store.size <= store.budget
    assert store.peak > store.budget >= store.size
    icounts = [s.icount for s in store]
    assert icounts == sorted(icounts) and icounts[0] < 2000      # the first stays
    # What changed since the snapshot before still holds after thinning.
    for a, b in zip(store.items, store.items[1:]):
        for pn, data in b.pages.items():
            if a.pages.get(pn) != data:
                assert pn in b.changed


def held_bytes(store) -> int:
    """What ``store`` holds, counted afresh: each pickle, what its driver
    keeps with it, and every distinct page (or large shared value) once."""
    distinct = {}
    for snap in store:
        distinct.update((id(d), len(d)) for d in snap.pages.values())
        distinct.update((id(a), len(a)) for a in snap.atoms
                        if type(a) is bytes and len(a) >= 256)
    return sum(len(s.blob) + s.extra_bytes for s in store) + sum(distinct.values())


def test_the_stores_size_is_what_it_holds_after_thinning_and_dropping():
    image, config = program_config("demand", "shadow")
    store = SnapshotStore(budget=600_000)
    recorder = Recorder(store, every=4, extra=lambda: None,
                        extra_bytes=lambda state, last: 1000)
    system = System(image, config)
    recorder.attach(system)
    system.run()
    assert store.thinned > 0 and all(s.extra_bytes == 1000 for s in store)
    assert store.size == held_bytes(store) <= store.budget
    n = len(store)
    store.drop_after(lambda s: s is not store.items[-1])     # the newest goes
    assert len(store) == n - 1 and store.size == held_bytes(store)
    keep = store.items[2].icount
    store.drop_after(lambda s: s.icount <= keep)             # most go: counted afresh
    assert len(store) == 3 and store.size == held_bytes(store)
    store.clear()
    assert (len(store), store.size, store.stats()["pages"]) == (0, 0, 0)


def test_the_stepper_keeps_its_recent_events_with_each_snapshot_within_the_budget():
    from emu.ui.session import EVENT_BYTES, SNAPSHOT_EVENTS
    image, config = program_config("demand", "shadow")
    session = Session(image, config)
    for _ in range(6):
        session.step(2000)
    store = session.recorder.store
    assert len(store) >= 6
    for a, b in zip(store.items, store.items[1:]):
        kept = b.extra[2]
        assert len(kept) == min(SNAPSHOT_EVENTS, b.extra[1])
        assert b.extra_bytes == EVENT_BYTES * min(len(kept), b.extra[1] - a.extra[1])
    assert store.size == held_bytes(store)


def test_the_console_sink_bus_subscribers_and_progress_are_the_restorers():
    image, config = program_config("hello", "shadow")
    seen, sink_old = [], []
    system = System(image, config, console_sink=sink_old.append)
    system.bus.subscribe(seen.append)
    system.progress = lambda s: None
    recorder = Recorder(every=1)
    recorder.attach(system)
    system.run()
    snap = recorder.store.items[len(recorder.store) // 2]
    sink = []
    restored = restore(snap, console_sink=sink.append)
    assert restored.progress is None and not restored.bus.active
    assert vars(restored.cpu).get("run") is None      # the recorder's hook is not kept
    before = restored.bus.count                         # the count goes on
    assert 0 < before < len(seen)
    events = []
    restored.bus.subscribe(events.append)
    result = restored.run()
    assert events == seen[before:]
    assert "".join(sink_old) == result.console
    assert sink and result.console.endswith("".join(sink))
    assert 0 < len(sink) < len(sink_old)


def test_several_vms_on_one_machine_are_refused_in_one_line():
    image, config = program_config("hello", "shadow")
    _, systems = build([image, image], ["a", "b"], config.with_(share_interval=0))
    with pytest.raises(SnapshotError, match="single VM"):
        Recorder().attach(systems[0])


def test_a_snapshot_budget_must_be_positive():
    with pytest.raises(ValueError):
        SnapshotStore(budget=0)


# --- the stepper's time travel ----------------------------------------------------------------

def machine_state(session, counters: bool = True) -> tuple:
    s = session.system
    return (s.cpu.registers(), s.cpu.icount, int(s.env.now), s.guest_memory_sha256(),
            s.console.text(), without_host_time(s.stats()) if counters else None)


@pytest.mark.parametrize("mode", MODES)
def test_back_restores_exactly_the_place_it_left(mode):
    image, config = program_config("demand", mode)
    session = Session(image, config)
    places = []
    for n in (3000, 2500, 4000, 1):
        places.append(machine_state(session))
        session.step(n)
    assert len(session.recorder.store) >= 4
    for place in reversed(places):
        session.back()
        assert machine_state(session) == place
    assert session.system.cpu.icount == 0


@pytest.mark.parametrize("mode", MODES)
def test_reverse_step_and_continue_come_back_to_the_places_passed(mode):
    """The machine as the guest sees it (registers, memory, console) and the
    simulated time are exactly as they were; counters that depend on how
    the run was cut into batches follow the replayed path (DECISIONS.md)."""
    image, config = program_config("demand", mode)
    session = Session(image, config)
    session.add_breakpoint("addr", image.labels["page_fault"], "page_fault")
    assert session.cont().startswith("breakpoint 1")
    first_hit = machine_state(session, counters=False)
    seen = [first_hit]
    for _ in range(3):
        session.stepi()
        seen.append(machine_state(session, counters=False))
    assert session.cont().startswith("breakpoint 1")
    session.reverse_continue()
    assert machine_state(session, counters=False) == first_hit
    for i in (1, 2, 3):
        session.stepi()
        assert machine_state(session, counters=False) == seen[i]
    session.reverse_step()
    assert machine_state(session, counters=False) == seen[2]
    session.reverse_step()
    assert machine_state(session, counters=False) == seen[1]


@pytest.mark.parametrize("mode", MODES)
def test_reverse_micro_steps_back_through_a_fault_one_event_at_a_time(mode):
    image, config = program_config("demand", mode)
    session = Session(image, config)
    session.add_breakpoint("addr", image.labels["user_main"], "user_main")
    session.cont()
    session.delete_breakpoint(None)
    session.next()                      # the first user-mode page fault begins
    seen = []
    for _ in range(5):
        seen.append((session.shown, session.event(session.shown - 1)[0],
                     machine_state(session)))
        session.micro()
    for shown, event, state in reversed(seen):
        message = session.reverse_micro()
        assert (session.shown, session.event(session.shown - 1)[0]) == (shown, event)
        assert machine_state(session) == state
        assert message.startswith("reverse-micro") and message.endswith(describe(event))


def test_reverse_micro_stops_at_the_start_of_the_history():
    image, config = program_config("hello", "shadow")
    session = Session(image, config)
    session.micro()
    session.micro()
    session.reverse_micro()
    assert session.reverse_micro().startswith("reverse-micro: at the start of the history")
    assert session.system.cpu.icount == 0


LAST_WRITES = {
    # The gpte of the first heap page of process 1 (pa 0x102200): P W U set by
    # the kernel's #PF handler, A and D by the first write through it.
    "native": "by the hardware walker (A/D bits), cycle 26,449",
    "shadow": "by the VMM's walk of the guest's table (A/D, step 2), cycle 180,815",
    "nested": "by the hardware walker (A/D bits), cycle 167,275",
}


@pytest.mark.parametrize("mode", MODES)
def test_last_write_names_who_set_a_gptes_dirty_bit(mode):
    image, config = program_config("demand", mode)
    session = Session(image, config)
    session.add_breakpoint("addr", image.labels["user_main.sum"], "user_main.sum")
    session.cont()
    assert session.system.cpu.icount == 13401
    here = machine_state(session)
    ma = {"native": "0x00102200", "shadow": "0x00009200", "nested": "0x00009200"}[mode]
    assert session.last_write("pa", 0x102200) == (
        f"last-write pa 0x00102200 (ma {ma}): 0x00201007 -> 0x00201067 {LAST_WRITES[mode]}, "
        "after 9,154 instructions, eip 0x00400036 <user_main.fill+0xf> "
        f"(demand.s:361: mov [HEAP + edx], eax) [{mode}, cpl 3]")
    assert "0x00000000 -> 0x000003e8 by the guest" in session.last_write("va", 0x480000)
    assert machine_state(session) == here            # looking back moves nothing


def test_last_write_names_the_shadow_fill_or_the_walker_that_wrote_an_spte():
    image, config = program_config("demand", "shadow")
    session = Session(image, config)
    session.add_breakpoint("exit", "cr0_write", "cr0_write")
    session.cont()
    session.delete_breakpoint(None)
    session.next()                      # the first hidden fault after paging is on
    while session.event(session.shown - 1)[0].kind != "shadow_fill":
        session.micro()                 # up to step 4: the VMM has written the spte
    fill = session.event(session.shown - 1)[0]
    spde = session.system.vmm.root.entry(fill.va >> 22)
    ma = (spde & ~0xFFF) + ((fill.va >> 12) & 0x3FF) * 4
    text = session.last_write("ma", ma)
    assert text.startswith(f"last-write ma {ma:#010x}: 0x00000000 -> {fill.data['spte']:#010x} "
                           "by the VMM writing a shadow entry (step 4), cycle ")
    session.step()                      # the restarted instruction's walk sets A
    assert "by the hardware walker (A/D bits)" in session.last_write("ma", ma)


def test_a_debuggers_write_is_where_the_history_begins():
    image, config = program_config("demand", "native")
    session = Session(image, config)
    session.step(500)
    session.rebase()
    session.step(10)
    assert session.reverse_step().startswith("reverse-step: back one instruction; at ")
    for _ in range(12):
        session.reverse_step()
    assert session.system.cpu.icount == 500
    assert session.reverse_step().endswith(f"eip {session.system.cpu.eip:#010x}")
    assert "start of the history" in session.reverse_step()


def test_the_steppers_script_goes_back_and_asks_who_wrote(tmp_path):
    # The stepper's own commands, as a student types them: the source line
    # in last-write's answer keeps its brackets (not taken for markup).
    import re

    from rich.console import Console

    from emu.ui.stepper import Stepper
    out = io.StringIO()
    console = Console(file=out, width=400, height=40, color_system=None,
                      force_terminal=False, highlight=False, emoji=False)
    session = Session(load("demand"), program_config("demand", "shadow")[1])
    Stepper(session, console, height=40).run_lines([
        "break page_fault", "continue", "step 40", "last-write pa 0x102ffc",
        "reverse-continue", "last-write pa 0x102ffc", "back 2", "reverse-continue", "quit"])
    said = [line for line in out.getvalue().splitlines()
            if re.match(r"(> )?(last-write|reverse-continue|back)", line)]
    assert said == [
        "last-write pa 0x00102ffc (ma 0x00009ffc): 0x00000000 -> 0x00200007 by the VMM "
        "emulating the guest's write (a tracing fault), cycle 79,774, after 7,884 "
        "instructions, eip 0x0000129a <page_fault.page_in+0x43> (demand.s:187: "
        "mov [esi + ecx*4], eax) [shadow, cpl 0]",
        "> reverse-continue: breakpoint 1 at 0x000011a0 (page_fault); at 7,853 instructions, "
        "eip 0x000011a0",
        "last-write pa 0x00102ffc (ma 0x00009ffc): not changed since the start of the history",
        "> back: undid continue, step 40; at the start of the run",
        "> reverse-continue: no breakpoint hit before; at the start of the history; at 0 "
        "instructions, eip 0x00001000"]
    assert session.system.cpu.icount == 0


@pytest.mark.parametrize("mode, fault, plain", [
    ("shadow", "true", ["VM exit (cr3_write); at 13,385 instructions, eip 0x000014b5",
                        "a fault begins (step 1 of 6); at 13,340 instructions, eip 0x00400036"]),
    ("native", "pf", ["the hardware delivers an exception to the guest; at 12,885 "
                      "instructions, eip 0x000018ea",
                      "the hardware delivers an exception to the guest; at 12,420 "
                      "instructions, eip 0x000018ea"]),
])
def test_reverse_continue_to_a_fault_a_write_or_a_fault_breakpoint(mode, fault, plain):
    def at_sum():
        image, config = program_config("demand", mode)
        session = Session(image, config)
        session.add_breakpoint("addr", image.labels["user_main.sum"], "user_main.sum")
        session.cont()
        session.delete_breakpoint(None)
        return session
    session = at_sum()                  # no breakpoints: the last fault or VM exit
    assert [session.reverse_continue() for _ in plain] == \
        [f"reverse-continue: {why}" for why in plain]
    session = at_sum()
    session.add_breakpoint("write", 0x480000, "0x480000")
    assert session.reverse_continue() == (
        "reverse-continue: breakpoint 2 on a write to va 0x00480000: 0x00000000 -> 0x000007d0;"
        " at 11,946 instructions, eip 0x0040003d")
    session = at_sum()
    session.add_breakpoint("fault", fault, fault)
    at = {"native": "12,885 instructions, eip 0x000018ea",
          "shadow": "12,884 instructions, eip 0x00400036"}[mode]
    assert session.reverse_continue() == f"reverse-continue: breakpoint 2 on fault {fault}; at {at}"


def test_the_steppers_snapshot_budget_is_an_option(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "s.txt"
    script.write_text("step 3000\nback\nquit\n")
    argv = [sys.executable, "-m", "emu", "step", "demand", "--script", str(script)]
    done = subprocess.run(argv + ["--snapshot-mib", "1"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert "> back: undid step 3000; at the start of the run" in done.stdout
    bad = subprocess.run(argv + ["--snapshot-mib", "0"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == ("emu: error: argument --snapshot-mib: 0 MiB is not between 1 and "
                          "65536 (see 'emu step --help')\n")
