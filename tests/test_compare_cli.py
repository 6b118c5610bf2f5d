"""``emu compare`` as a user meets it: the width, the exports, the selection
of configurations, the I/O split and the progress line.

The numbers in the views are checked against the runs themselves (the
Result of each configuration), and what the exports hold against the text
the console showed.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from emu.cli import main, programs
from emu.compare import compare, configurations
from emu.programs import assemble_file
from emu.system import Config
from emu.ui.compare import CHART, chart_parts, render

ROOT = pathlib.Path(__file__).resolve().parent.parent


def emu(*args, **kw):
    return subprocess.run([sys.executable, "-m", "emu", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def hello():
    return compare(assemble_file(programs.resolve("hello")), program="hello")


@pytest.fixture(scope="module")
def stale():
    return compare(assemble_file(programs.resolve("stale_tlb")), program="stale_tlb")


def plain(cmp, width: int, split_io: bool = False) -> list[str]:
    from io import StringIO

    from rich.console import Console
    out = StringIO()
    Console(file=out, width=width, color_system=None).print(
        render(cmp, cmp.program, width=width, split_io=split_io))
    return out.getvalue().splitlines()


# --- the width ------------------------------------------------------------------------
@pytest.mark.parametrize("width", [40, 50, 60, 72, 80, 100, 160])
def test_every_line_fits_and_no_number_is_split(stale, width):
    lines = plain(stale, width)
    assert max(len(line.rstrip()) for line in lines) <= width
    text = "\n".join(lines)
    for label, r in stale.runs:
        # each figure whole, on one line, once per view that shows it
        assert re.search(rf"(?<![\d,]){re.escape(f'{r.cycles:,}')}(?![\d,])", text), label
        assert label.split()[-1] in text
    exits = stale.result("shadow trace-cache").stats["vmm"]["exits"]
    for reason, n in exits.items():
        if n:
            assert re.search(rf"\b{reason}\b", text) and f"{n:,}" in text


def test_at_80_columns_the_tables_fit_and_below_they_stack(stale):
    at80 = "\n".join(plain(stale, 80))
    assert "config" in at80 and "vs native" in at80       # the cost table
    narrow = plain(stale, 60)
    assert "vs native" not in "\n".join(narrow)           # stacked: one block per run
    for label, r in stale.runs:
        i = narrow.index(label)
        slowdown = r.cycles / stale.native.cycles
        assert narrow[i + 1] == f"  cycles {r.cycles:,} ({slowdown:.2f}x native)"


def test_a_stacked_line_wraps_between_its_items_indented_under_the_first(stale):
    lines = plain(stale, 40)
    labels = {label for label, _ in stale.runs}
    body = lines[lines.index("native"):next(i for i, line in enumerate(lines)
                                           if line.startswith("cycles by category"))]
    wrapped = [line for line in body if line.startswith("      ")]
    assert wrapped                                   # 40 columns: the exits' list wraps
    for line in body:
        assert line in labels or line.startswith("  ") or line == "", line
        assert len(line) <= 40
    for label, r in stale.runs:                      # every item whole: name:count
        text = " ".join(body[body.index(label) + 1:]).split()
        for reason, n in r.stats.get("vmm", {}).get("exits", {}).items():
            if n:
                assert f"{reason}:{n:,}" in text, (label, reason)


def test_a_pipe_gets_80_columns_and_width_sets_it(tmp_path):
    piped = emu("compare", "stale_tlb")
    assert piped.returncode == 0, piped.stderr
    assert max(map(len, piped.stdout.splitlines())) <= 80
    wide = emu("compare", "stale_tlb", "--width", "120")
    assert max(map(len, wide.stdout.splitlines())) <= 120
    assert max(map(len, wide.stdout.splitlines())) > 80
    narrow = emu("compare", "stale_tlb", "--width", "39")
    assert (narrow.returncode, narrow.stdout) == (2, "")
    assert narrow.stderr == "emu: error: --width must be at least 40 columns, not 39\n"


def test_the_chart_shows_every_cycle_of_each_category_once(stale, hello):
    for cmp in (stale, hello):
        for _, r in cmp.runs:
            total = sum(r.stats["cycles_by_category"].values())
            for split in (False, True):
                parts = chart_parts(r, split)
                assert sum(parts.values()) == total
                assert min(parts.values()) >= 0


# --- exports --------------------------------------------------------------------------
def svg_lines(svg: str) -> list[str]:
    """The text of rich's SVG export, line by line (segments placed by x)."""
    rows: dict[int, dict[int, str]] = {}
    for m in re.finditer(r'<text class="[^"]*-r\d+"[^>]*x="([\d.]+)"[^>]*textLength="([\d.]+)"'
                         r'[^>]*clip-path="url\(#[^)]*-line-(\d+)\)">([^<]*)</text>', svg):
        x, length, line, raw = float(m[1]), float(m[2]), int(m[3]), html.unescape(m[4])
        text = raw.replace("\xa0", " ")
        rows.setdefault(line, {})[round(x / (length / len(text)))] = text
    out = []
    for line in range(max(rows) + 1):
        cells = rows.get(line, {})
        s = ""
        for col in sorted(cells):
            s = s.ljust(col) + cells[col]
        out.append(s.rstrip())
    return out


def html_text(page: str) -> list[str]:
    body = re.search(r"<code[^>]*>(.*)</code>", page, re.S)[1]
    return [line.rstrip() for line in html.unescape(re.sub(r"<[^>]+>", "", body)).splitlines()]


EXPORTS = ("json", "svg", "html")


@pytest.mark.parametrize("chosen", [c for n in (1, 2, 3)
                                    for c in itertools.combinations(EXPORTS, n)],
                         ids="+".join)
def test_every_export_combination_is_complete(tmp_path, capsys, chosen):
    paths = {kind: tmp_path / f"out.{kind}" for kind in chosen}
    args = [a for kind in chosen for a in (f"--{kind}", str(paths[kind]))]
    assert main(["compare", "hello", *args]) == 0
    shown = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert shown[0] == ("compare hello: guest-visible results identical in every "
                        "configuration")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    if "json" in paths:
        data = json.loads(paths["json"].read_text())
        assert [r["config"] for r in data["runs"]] == [label for label, _ in configurations()]
        assert data["identical"] is True
    if "svg" in paths:
        assert svg_lines(paths["svg"].read_text()) == shown
    if "html" in paths:
        assert html_text(paths["html"].read_text()) == shown


@pytest.mark.parametrize("kind", EXPORTS)
def test_dash_sends_one_export_to_stdout_and_the_table_to_stderr(kind):
    done = emu("compare", "hello", f"--{kind}", "-")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("compare hello: guest-visible results identical")
    if kind == "json":
        assert json.loads(done.stdout)["identical"] is True
    elif kind == "svg":
        assert done.stdout.startswith("<svg") and done.stdout.rstrip().endswith("</svg>")
        assert svg_lines(done.stdout) == [x.rstrip() for x in done.stderr.splitlines()]
    else:
        assert done.stdout.startswith("<!DOCTYPE html>")
        assert html_text(done.stdout) == [x.rstrip() for x in done.stderr.splitlines()]


def test_two_exports_to_stdout_are_refused_before_any_run(tmp_path):
    done = emu("compare", "hello", "--svg", "-", "--html", "-")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "emu: error: only one output can be '-' (standard output)\n"


@pytest.mark.parametrize("kind", EXPORTS)
def test_an_unwritable_export_is_refused_before_any_run(tmp_path, kind):
    target = tmp_path / "no_such_dir" / f"x.{kind}"
    done = emu("compare", "forkwait", f"--{kind}", target)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"emu: error: cannot write {target}: No such file or directory\n"


# --- which configurations -------------------------------------------------------------
@pytest.mark.parametrize("args,labels", [
    ([], ["native", "shadow trace-cache", "shadow trace-drop", "shadow oos-cache",
          "shadow oos-drop", "nested"]),
    (["--mode", "nested"], ["native", "nested"]),
    (["--mode", "shadow"], ["native", "shadow trace-cache", "shadow trace-drop",
                            "shadow oos-cache", "shadow oos-drop"]),
    (["--shadow-policy", "oos-drop"], ["native", "shadow oos-drop"]),
    (["--mode", "shadow", "--shadow-policy", "trace-drop"], ["native", "shadow trace-drop"]),
])
def test_mode_and_shadow_policy_select_the_configurations(tmp_path, capsys, args, labels):
    out = tmp_path / "c.json"
    assert main(["compare", "stale_tlb", *args, "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["config"] for r in runs] == labels
    shown = capsys.readouterr().out
    assert f"{len(labels)} configurations)" in shown
    for r in runs:
        faults = r["faults"]
        # the policy really ran: trace policies trace, oos policies unsync
        if "trace" in r["config"]:
            assert faults.get("tracing", 0) > 0 and "unsync" not in faults
        if "oos" in r["config"]:
            assert faults.get("unsync", 0) > 0 and "tracing" not in faults
        if r["config"] in ("native", "nested"):
            assert "tracing" not in faults and "unsync" not in faults


def test_other_machine_options_reach_every_configuration(tmp_path):
    out = tmp_path / "c.json"
    assert main(["compare", "hello", "--tlb-kind", "unified", "--json", str(out)]) == 0
    cmp = compare(assemble_file(programs.resolve("hello")),
                  configurations(Config(tlb_kind="unified")))
    misses = [r["tlb_misses"] for r in json.loads(out.read_text())["runs"]]
    assert misses == [r.stats["mmu"]["tlb"]["misses"] for _, r in cmp.runs]   # one TLB each
    assert misses[0] == 0 and min(misses[1:]) > 0       # natively paging stays off


@pytest.mark.parametrize("args,message", [
    (["--mode", "native"], "--mode native selects nothing to compare: native is the "
                           "reference of every comparison (choose shadow or nested)"),
    (["--mode", "nested", "--shadow-policy", "oos-drop"],
     "--shadow-policy applies to shadow paging, not to --mode nested"),
])
def test_selections_that_mean_nothing_are_refused(args, message):
    done = emu("compare", "hello", *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"emu: error: {message}\n")


# --- console I/O exits apart ----------------------------------------------------------
def test_split_io_counts_one_exit_per_console_byte_and_the_power_off(hello):
    for _, r in hello.runs[1:]:
        exits = r.stats["vmm"]["exits"]
        assert exits["io"] == len(r.console.encode()) + 1      # + the power-off port
    n = f"{len(hello.native.console) + 1}"
    lines = plain(hello, 80, split_io=True)
    assert max(map(len, lines)) <= 80 and "config" in lines[3]      # the tables, not stacked
    text = "\n".join(lines)
    assert "paging exits" in text and "≡ console I/O exits" in text
    i = next(k for k, line in enumerate(lines) if line.rstrip() == "console I/O")
    assert lines[i + 1].split() == ["exits", "-", *[n] * 5]
    shares = lines[i + 2].split()[2:]
    assert shares[0] == "-" and all(s.endswith("%") for s in shares[1:])
    stacked = "\n".join(plain(hello, 60, split_io=True))
    assert f"console I/O exits io:{n} (" in stacked
    unsplit = "\n".join(plain(hello, 80))
    assert "console I/O" not in unsplit and "≡" not in unsplit


def test_split_io_json_gives_the_io_cycles(tmp_path):
    out = tmp_path / "c.json"
    assert main(["compare", "hello", "--split-io", "--json", str(out)]) == 0
    cmp = compare(assemble_file(programs.resolve("hello")))
    for r_json, (label, r) in zip(json.loads(out.read_text())["runs"], cmp.runs):
        if label == "native":
            assert r_json["io_exit_cycles"] == 0
            continue
        costs = dict(cmp.configs)[label].costs
        n = r.stats["vmm"]["exits"]["io"]
        assert r_json["io_exit_cycles"] == (n * costs.vm_exit
                                            + r.stats["cycles_by_category"]["vmm_io"])
        assert chart_parts(r, True)["io"] == r_json["io_exit_cycles"]
    assert [b[0] for b in CHART] == ["guest", "walk", "exit", "io", "vmm"]


# --- progress -------------------------------------------------------------------------
def test_progress_on_a_terminal_names_each_configuration():
    import pty
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "emu", "compare", "stale_tlb"],
                              stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300)
        os.close(follower)
        follower = None
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert "\x1b" not in done.stdout and "\r" not in done.stdout     # the pipe stays clean
    text = seen.decode()
    for i, label in enumerate(label for label, _ in configurations()):
        assert f"compare: {i + 1} of 6, {label} ·" in text
    assert text.endswith("\r\x1b[K")                                # erased at the end


def test_ctrl_c_shows_the_configurations_that_finished(monkeypatch, capsys, tmp_path):
    """Ctrl-C in the third configuration: the two that ran are shown, the
    exit status is 130 and no file is written (it would pass for all six)."""
    from emu.system import System
    real, calls = System.run, []

    def run(self):
        calls.append(self.config.mode)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(System, "run", run)
    out = tmp_path / "cmp.json"
    assert main(["compare", "hello", "--json", str(out)]) == 130
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1] == "(poweroff, status 0, 176 instructions, 2 configurations)"
    assert [ln.split()[:3] for ln in lines[5:8]] == [["native", "466", "1.00x"],
                                                    ["shadow", "trace-cache", "22,998"], []]
    assert captured.err == "emu: interrupted: 2 of 6 configurations ran; no file written\n"
    assert not out.exists()


def test_ctrl_c_in_the_first_configuration_is_one_line(monkeypatch, capsys):
    from emu.system import System

    def run(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(System, "run", run)
    assert main(["compare", "hello"]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "emu: interrupted\n")
