"""emu sweep: specs, plans, rows, the cache, the report and the command
line, in this process and in local worker processes.  The Dask cluster's
tests are in test_sweep_dask.py."""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET

import pytest

from emu import programs
from emu.cli import main
from emu.sweep import (
    Cache,
    InProcess,
    LocalProcesses,
    Spec,
    SpecError,
    add_cli_axis,
    make_plan,
    read_spec,
    run_sweep,
    write_csv,
    write_dataset,
)
from emu.sweep import cell as cellmod
from emu.sweep.cell import RunCell, emulator_version, run_cell
from emu.sweep.report import write_report
from emu.sweep.spec import expand
from emu.system import Config

SPIN = "org 0x1000\n_start:\n    inc eax\n    jmp _start\n"   # runs until stopped


def spec_of(**axes) -> Spec:
    spec = Spec()
    for name, values in axes.items():
        add_cli_axis(spec, name, values, "test")
    return spec


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def without_host_time(rows):
    return [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]


# --- specs -----------------------------------------------------------------
def test_spec_is_the_product_of_its_axes_then_its_explicit_runs(tmp_path):
    path = write(tmp_path, "s.toml", """
[sweep]
name = "demo"
timeout = 30
[config]
max_cycles = 1_000_000
[axes]
guest = ["hello", "paging"]
mode = ["native", "nested"]
[[run]]
guest = "hello"
mode = "shadow"
costs.vm_exit = 1200
""")
    spec = read_spec(path)
    assert (spec.name, spec.timeout) == ("demo", 30.0)
    assert expand(spec) == [
        {"max_cycles": 1_000_000, "guest": "hello", "mode": "native"},
        {"max_cycles": 1_000_000, "guest": "hello", "mode": "nested"},
        {"max_cycles": 1_000_000, "guest": "paging", "mode": "native"},
        {"max_cycles": 1_000_000, "guest": "paging", "mode": "nested"},
        {"max_cycles": 1_000_000, "guest": "hello", "mode": "shadow", "costs.vm_exit": 1200},
    ]


def test_command_line_axes_cross_every_run_and_win(tmp_path):
    spec = read_spec(write(tmp_path, "s.toml", """
[axes]
guest = ["hello"]
mode = ["native", "shadow"]
[[run]]
guest = "paging"
tlb_entries = 8
"""))
    add_cli_axis(spec, "tlb-entries", "16,32", "--tlb-entries")
    assert [(s["guest"], s.get("mode"), s["tlb_entries"]) for s in expand(spec)] == [
        ("hello", "native", 16), ("hello", "native", 32),
        ("hello", "shadow", 16), ("hello", "shadow", 32),
        ("paging", None, 16), ("paging", None, 32)]


def test_a_field_that_changes_nothing_in_a_mode_does_not_multiply_its_runs():
    plan = make_plan(spec_of(guest="hello", mode="native,shadow,nested",
                             shadow_policy="trace-cache,oos-drop", ntlb_entries="0,16"))
    got = [(r.config.mode, r.labels()["shadow_policy"], r.labels()["ntlb_entries"])
           for r in plan.runs]
    assert got == [("native", None, None), ("shadow", "trace-cache", None),
                   ("shadow", "oos-drop", None), ("nested", None, 0), ("nested", None, 16)]
    assert plan.merged == 12 - 5
    assert plan.runs[0].labels()["machine_mib"] is None      # no machine natively
    assert plan.runs[1].labels()["machine_mib"] == Config().machine_bytes >> 20


def test_a_guests_own_options_apply_unless_the_sweep_sets_the_field():
    plan = make_plan(spec_of(guest="bad_runaway,hello"))
    assert [(r.guest, r.config.max_cycles, r.config.clock) for r in plan.runs] == [
        ("bad_runaway", 2_000_000, "cycles"), ("hello", Config.max_cycles, "instructions")]
    plan = make_plan(spec_of(guest="bad_runaway", max_cycles="1000"))
    assert (plan.runs[0].config.max_cycles, plan.runs[0].config.clock) == (1000, "cycles")


BAD_SPECS = [
    ("[axes]\nguest = ['hello']\ntlb_entires = [16]\n",
     "s.toml: [axes]: unknown field 'tlb_entires' (did you mean 'tlb_entries'?)"),
    ("[axes]\nguest = ['hello']\nmode = []\n",
     "s.toml: [axes]: mode is empty (an axis needs at least one value)"),
    ("[axes]\nguest = ['hello', 'no_such_guest']\n",
     "s.toml: unknown guest 'no_such_guest': no such file, and no bundled guest program of "
     "that name ('emu list' shows them)"),
    ("[axes]\nguest = ['hello']\ntlb_entries = ['many']\n",
     "s.toml: [axes]: tlb_entries: 'many' is not a whole number"),
    ("[axes]\nguest = ['hello']\nmode = ['nativ']\n",
     "s.toml: run guest=hello mode=nativ: unknown mode 'nativ' (choose from native, shadow, "
     "nested)"),
    ("[axes]\nguest = ['hello']\ntlb_ways = [3]\n",
     "s.toml: run guest=hello tlb_ways=3: --tlb-ways must divide --tlb-entries"),
    ("[axes]\nguest = ['hello']\ncosts.vm_exti = [1]\n",
     "s.toml: [axes]: unknown cost 'vm_exti' (the cost model has: mem_ref, walk_ref, interrupt, "
     "vm_exit, vm_entry, vmm_walk_ref, vmm_pmap_lookup, vmm_alloc, vmm_zero_page, "
     "vmm_fill_shadow, vmm_emulate, vmm_flush, vmm_inject, vmm_io)"),
    ("[axes]\nmode = ['native']\n",
     "s.toml: no guest to run (give a guest axis, a guest in every [[run]], or --guest)"),
    ("[axes\n", "s.toml: not valid TOML: Expected ']' at the end of a table declaration "
                "(at line 1, column 6)"),
    ("[axis]\nguest = ['hello']\n",
     "s.toml: unknown table [axis] (a spec has [sweep], [config], [axes] and [[run]])"),
    ("[sweep]\ntimeout = -1\n[axes]\nguest = ['hello']\n",
     "s.toml: [sweep] timeout: must be more than 0 seconds and at most a week (604800), "
     "not -1"),
    ("[sweep]\nname = '../../evil'\n[axes]\nguest = ['hello']\n",
     "s.toml: [sweep] name '../../evil' must be a plain name (no folders, not starting "
     "with '.'): it names NAME-results"),
    ("[sweep]\nname = 'x'\n", "s.toml: nothing to run (give [axes] or [[run]] tables)"),
]


@pytest.mark.parametrize("text,message", BAD_SPECS)
def test_a_bad_spec_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, text,
                                                     message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "s.toml", text)
    assert main(["sweep", "s.toml", "--cache", "cache", "--in-process"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"emu: error: {message}\n")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "s-results").exists()


@pytest.mark.parametrize("argv,message", [
    (["--guest", "hello", "--set", "tlb_entries"], "--set tlb_entries: expected FIELD=VALUE"
                                                   "[,VALUE...]"),
    (["--guest", "hello,,paging"], "--guest: an empty value in 'hello,,paging'"),
    (["--guest", "hello", "--set", "clock=sundial"],
     "run guest=hello clock=sundial: --clock must be one of instructions, cycles"),
    (["--mode", "native"], "no guest to run (give a guest axis, a guest in "
                           "every [[run]], or --guest)"),
    ([], "nothing to run: give a SPEC.toml or axes such as --guest hello"),
    (["missing.toml"], "missing.toml: no such file"),
    (["--guest", "hello", "--in-process", "-j", "2"],
     "--in-process runs one run at a time, here: it does not go with --jobs"),
])
def test_bad_axes_on_the_command_line_are_one_line(tmp_path, capsys, monkeypatch, argv,
                                                   message):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *argv, "--cache", "cache"]) == 2
    assert capsys.readouterr() == ("", f"emu: error: {message}\n")


def test_a_guest_that_does_not_assemble_stops_the_sweep_before_it_runs(tmp_path, capsys):
    bad = write(tmp_path, "bad.s", "_start:\n    mov eax,\n")
    assert main(["sweep", "--guest", bad, "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"emu: {bad}:2:") and not (tmp_path / "c").exists()


# --- a student's VMM as an axis ------------------------------------------------
MINE = ("from emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
        "class Mine(BuiltinShadowVmm):\n    pass\n")
STUCK = ("from emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
         "class Stuck(BuiltinShadowVmm):\n"
         "    def handle_page_fault(self, exit):\n"
         "        raise RuntimeError('not yet')\n")


def test_vmm_files_are_an_axis_of_shadow_runs_found_beside_the_spec(tmp_path):
    write(tmp_path, "mine.py", MINE)
    spec = read_spec(write(tmp_path, "s.toml", "[axes]\nguest = ['hello']\n"
                           "mode = ['native', 'shadow']\nvmm = ['builtin', 'mine.py']\n"))
    plan = make_plan(spec)
    assert [(r.config.mode, r.labels()["vmm"]) for r in plan.runs] == [
        ("native", None), ("shadow", "builtin"), ("shadow", str(tmp_path / "mine.py"))]
    assert plan.merged == 1
    rows = run_sweep(plan, InProcess(), Cache(None)).rows
    assert [r["outcome"] for r in rows] == ["poweroff"] * 3
    # A subclass that changes nothing runs exactly as the built-in VMM.
    assert {k: v for k, v in rows[2].items() if k not in ("vmm", "key", "host_seconds")} == \
        {k: v for k, v in rows[1].items() if k not in ("vmm", "key", "host_seconds")}


def test_a_vmm_that_raises_is_a_row_that_names_its_line(tmp_path):
    stuck = write(tmp_path, "stuck.py", STUCK)
    rows = run_sweep(make_plan(spec_of(guest="demand", mode="shadow", vmm=stuck)),
                     InProcess(), Cache(None)).rows
    assert rows[0]["outcome"] == "error"
    assert rows[0]["message"].startswith("your VMM raised RuntimeError: not yet at ")
    assert rows[0]["message"].endswith("stuck.py:6 in handle_page_fault")


def test_a_vmm_stuck_in_one_call_into_c_is_a_row_not_a_hung_sweep(tmp_path):
    # The cell's child process is watched from outside (vmm/handler_time.py):
    # the alarm cannot stop sum(range(...)) in C, the watcher can.
    stuck = write(tmp_path, "stuck.py", "from emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
                  "class InC(BuiltinShadowVmm):\n"
                  "    def handle_page_fault(self, exit):\n"
                  "        return sum(range(10 ** 13))\n")
    rows = run_sweep(make_plan(spec_of(guest="hello", mode="shadow", vmm=stuck)),
                     InProcess(), Cache(None)).rows
    assert (rows[0]["outcome"], rows[0]["message"]) == ("error", (
        "your VMM ran for more than 5 s in one call that Python cannot interrupt "
        "(a long computation in C?): stopped"))
    assert not rows[0].get("transient")          # the student's, every time: cached


def test_a_vmm_run_off_the_main_thread_goes_to_a_child_process(tmp_path):
    """A Dask worker runs tasks on threads; the alarm that bounds each
    handler of a student's VMM needs the main thread."""
    import threading
    mine = write(tmp_path, "mine.py", MINE)
    plan = make_plan(spec_of(guest="hello", mode="shadow", vmm=mine))
    run = plan.runs[0]
    cell = RunCell(plan.images[run.path], run.config, 60, plan.emulator)
    got = []
    thread = threading.Thread(target=lambda: got.append(run_cell(cell)))
    thread.start()
    thread.join(120)
    here = run_cell(cell)
    assert got and without_host_time([got[0]]) == without_host_time([here])
    assert here["outcome"] == "poweroff"


@pytest.mark.parametrize("vmm, message", [
    ("nofile.py", "vmm nofile.py: {tmp}/nofile.py: no such file"),
    ("broken.py", "vmm broken.py: {tmp}/broken.py:1: syntax error: '(' was never closed"),
])
def test_a_vmm_that_does_not_load_is_one_line_before_anything_runs(tmp_path, capsys,
                                                                 monkeypatch, vmm, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "broken.py", "x = (\n")
    assert main(["sweep", "--guest", "hello", "--mode", "shadow", "--vmm", vmm,
                 "--cache", "cache"]) == 2
    assert capsys.readouterr() == ("", f"emu: error: {message.format(tmp=tmp_path)}\n")
    assert not (tmp_path / "cache").exists()


# --- rows ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    """hello and paging in every mode, in this process, no cache."""
    plan = make_plan(spec_of(guest="hello,paging", mode="native,shadow,nested"))
    return plan, run_sweep(plan, InProcess(), Cache(None))


def test_a_row_is_what_the_guest_did(small):
    _, result = small
    assert [(r["guest"], r["mode"]) for r in result.rows] == [
        (g, m) for g in ("hello", "paging") for m in ("native", "shadow", "nested")]
    for r in result.rows:
        # The guests' recorded console and outcome, kept beside them.
        assert r["console"] == programs.expected_output(r["guest"]).read_text()
        assert (r["outcome"], r["exit_status"], r["message"]) == \
            ("poweroff", 0, "powered off with status 0")
    for guest in ("hello", "paging"):
        same = {(r["instructions"], r["guest_memory_sha256"], r["registers.eip"])
                for r in result.rows if r["guest"] == guest}
        assert len(same) == 1       # the guest cannot tell the modes apart


def test_a_row_has_every_counter_zero_where_it_did_not_happen_empty_where_it_cannot(small):
    _, result = small
    rows = {(r["guest"], r["mode"]): r for r in result.rows}
    native, shadow, nested = (rows["paging", m] for m in ("native", "shadow", "nested"))
    assert native["vmm.exits_total"] is None and native["vmm.exits.pf"] is None
    assert shadow["vmm.exits.npf"] == 0 and nested["vmm.exits.pf"] == 0
    assert shadow["vmm.exits.pf"] > 0 and nested["vmm.exits.npf"] > 0
    assert nested["mmu.nested.ntlb_hits"] > 0 and shadow["mmu.nested.ntlb_hits"] is None
    for r in result.rows:
        exits = [v for k, v in r.items() if k.startswith("vmm.exits.")]
        assert r["vmm.exits_total"] == (sum(exits) if r["mode"] != "native" else None)
        for tlb in ("itlb", "dtlb"):
            assert r[f"mmu.{tlb}.hits"] + r[f"mmu.{tlb}.misses"] == r[f"mmu.{tlb}.lookups"]
        assert r["cycles_by_category.guest"] > 0 and r["host_seconds"] > 0
    assert list(result.rows[0])[:3] == ["guest", "mode", "mem_mib"]


def test_rows_read_back_from_parquet_and_csv_in_one_line(small, tmp_path):
    import pandas as pd
    _, result = small
    write_dataset(result.rows, str(tmp_path / "out"), {"name": "t"})
    write_csv(result.rows, str(tmp_path / "out.csv"))
    df = pd.read_parquet(tmp_path / "out")
    back = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.astype(object).to_dict("records")]
    assert back == result.rows
    csv = pd.read_csv(tmp_path / "out.csv")
    assert list(csv.columns) == list(df.columns)
    assert csv["cycles"].tolist() == df["cycles"].tolist()
    assert csv["console"].tolist() == df["console"].tolist()
    meta = json.loads((tmp_path / "out" / "_sweep.json").read_text())
    assert meta == {"name": "t"}


def test_local_worker_processes_give_the_rows_of_this_process(small):
    plan, here = small
    there = run_sweep(plan, LocalProcesses(2), Cache(None))
    assert (there.ran, there.engine.workers, there.engine.workers_lost) == (6, 2, [])
    assert without_host_time(there.rows) == without_host_time(here.rows)


# --- the cache -------------------------------------------------------------
class Interrupting(InProcess):
    """Stops the sweep (as Ctrl-C would) after ``n`` runs."""

    def __init__(self, n):
        self.n = n

    def run(self, jobs, on_done):
        for i, job in enumerate(jobs):
            if i == self.n:
                raise KeyboardInterrupt
            on_done(job, job.fn(job.payload))


def test_an_interrupted_sweep_resumes_and_a_rerun_runs_only_what_changed(tmp_path):
    cache = Cache(tmp_path / "cache")
    plan = make_plan(spec_of(guest="hello", mode="native,shadow,nested"))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, Interrupting(2), cache)
    first = run_sweep(plan, InProcess(), cache)
    assert (first.ran, first.cached) == (1, 2)
    again = run_sweep(plan, InProcess(), cache)
    assert (again.ran, again.cached) == (0, 3) and again.rows == first.rows
    more = make_plan(spec_of(guest="hello", mode="native,shadow,nested", tlb_entries="64,16"))
    changed = run_sweep(more, InProcess(), cache)
    assert (changed.ran, changed.cached) == (3, 3)
    # A cache file cut short is taken as missing, and written again.
    path = cache.path(plan.runs[0].key)
    path.write_text(path.read_text()[:50])
    assert run_sweep(plan, InProcess(), cache).ran == 1
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".tmp")]


def test_the_key_changes_with_the_image_the_config_and_the_emulator(tmp_path, monkeypatch):
    src = write(tmp_path, "g.s", "org 0x1000\n_start:\n    mov eax, 1\n    hlt\n")
    key = make_plan(spec_of(guest=src)).runs[0].key
    assert make_plan(spec_of(guest=src)).runs[0].key == key
    assert make_plan(spec_of(guest=src, tlb_ways="2")).runs[0].key != key
    assert make_plan(spec_of(guest=src, **{"costs.walk_ref": "21"})).runs[0].key != key
    write(tmp_path, "g.s", "org 0x1000\n_start:\n    mov eax, 2\n    hlt\n")
    assert make_plan(spec_of(guest=src)).runs[0].key != key
    write(tmp_path, "g.s", "org 0x1000\n_start:\n    mov eax, 1\n    hlt\n    ; a comment\n")
    assert make_plan(spec_of(guest=src)).runs[0].key == key      # same bytes, same run
    monkeypatch.setattr(cellmod, "_version", emulator_version() + ".changed")
    assert make_plan(spec_of(guest=src)).runs[0].key != key


# --- the report ------------------------------------------------------------
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples", "sweeps")


def test_the_report_has_each_table_when_the_sweep_has_its_data(tmp_path):
    plan = make_plan(read_spec(os.path.join(EXAMPLES, "quick.toml")))
    rows = run_sweep(plan, InProcess(), Cache(None)).rows
    page = write_report(rows, str(tmp_path / "r"), {"name": "t", "emulator": "x"})
    text = open(page).read()
    assert text.startswith("# Sweep t\n\n16 runs (16 poweroff); emulator x.")
    for title in ("Exits and cycles per guest and mode", "TLB size and cycles",
                  "Nested walk references against TLB reach",
                  "Shadow policy against the guest's page-table write rate", "Sources"):
        assert f"\n## {title}\n" in text
    assert "Not in this sweep" not in text
    # The forkwait-style table at the first TLB size: cycles against native's.
    at16 = {(r["guest"], r["mode"], r["shadow_policy"]): r for r in rows
            if r["tlb_entries"] == 16}
    nat, sh = at16["paging", "native", None], at16["paging", "shadow", "oos-cache"]
    line = next(ln for ln in text.splitlines() if ln.startswith("| paging | shadow/oos-cache"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:6] == [f"{sh['cycles']:,}", f"{sh['cycles'] / nat['cycles']:.2f}",
                          f"{sh['vmm.exits_total']:,}",
                          f"{1000 * sh['vmm.exits_total'] / sh['instructions']:.2f}"]
    for svg in ("exits_cycles.svg", "tlb_cycles.svg", "walks_reach.svg", "policy_pt_writes.svg"):
        root = ET.parse(tmp_path / "r" / svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert f"]({svg})" in text


def test_a_report_says_which_axis_would_give_a_missing_table(small, tmp_path):
    _, result = small
    text = open(write_report(result.rows, str(tmp_path), {"name": "t"})).read()
    assert "*Not in this sweep: one TLB size; give tlb_entries two values or more " \
           "(--tlb-entries 16,64)*" in text
    assert "*Not in this sweep: one shadow policy;" in text
    assert (tmp_path / "exits_cycles.svg").exists()
    assert not (tmp_path / "tlb_cycles.svg").exists()


# --- the command line ------------------------------------------------------
def test_emu_sweep_writes_the_dataset_csv_and_report_and_resumes_from_the_cache(
        tmp_path, capsys, monkeypatch):
    import pandas as pd
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "s.toml", "[sweep]\nname = 'two'\n[axes]\nguest = ['hello']\n"
                              "mode = ['native', 'nested']\n")
    argv = ["sweep", "s.toml", "--cache", "c", "--csv", "two.csv", "--in-process"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sweep two: 2 runs (2 ran, 0 from the cache) in ")
    assert out[0].endswith(" s on this process")
    assert out[1:] == ["  outcomes: poweroff 2", "  results: two-results/runs.parquet, two.csv"]
    assert pd.read_parquet("two-results")["mode"].tolist() == ["native", "nested"]
    assert main([*argv, "--report", "rep", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "rep" / "index.md").exists()
    assert main(["sweep", "s.toml", "--cache", "c", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "    1  cached  guest=hello mode=native", "    2  cached  guest=hello mode=nested",
        "2 runs, 2 in the cache"]


def test_emu_sweep_exits_5_when_a_run_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "spin.s", SPIN)
    assert main(["sweep", "--guest", "spin.s", "--timeout", "0.2", "--set",
                 "max_cycles=1e12".replace("1e12", str(10 ** 12)), "--no-cache",
                 "--in-process", "-o", "o"]) == 5
    assert "outcomes: timeout 1" in capsys.readouterr().out


def test_the_example_specs_are_valid():
    sizes = {}
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".toml"):
            sizes[name] = len(make_plan(read_spec(os.path.join(EXAMPLES, name))).runs)
    assert sizes == {"exits.toml": 5, "forkwait.toml": 16, "policies.toml": 35,
                     "quick.toml": 16, "tlb.toml": 45}


def test_spec_errors_are_emu_errors():
    with pytest.raises(SpecError):
        make_plan(spec_of(mode="native"))


def test_an_output_that_is_a_fifo_is_written_to_not_replaced(tmp_path):
    # (a device or FIFO -- /dev/null -- must never be renamed over)
    import stat
    import threading
    from pathlib import Path

    from emu.lab import many
    from emu.outputs import replace_file
    for name, write in (
            ("rows.csv", lambda p: replace_file(p, lambda tmp: Path(tmp).write_text("a,b\n"))),
            ("grades.csv", lambda p: many.write([dict.fromkeys(many.FIELDS, "x")], p))):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda f=fifo, g=got: g.append(f.read_text()))
        reader.start()
        write(str(fifo))
        reader.join(10)
        assert got and got[0].startswith(("a,b", "submission,"))
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
