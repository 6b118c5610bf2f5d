"""README.md and guest_programs/README.md say what the commands print.

An output shown in either file follows a marker line naming its command:

    <!-- output: emu compare forkwait -->      the block is the whole output
    <!-- excerpt: emu run demand --narrate --> the block is a run of its lines

The test runs each command (``emu ...`` in this process, ``python -m ...``
as a process) from the repository root and compares, trailing blanks
aside.  ``EMU_REGEN=1 pytest tests/test_readme.py`` writes the blocks
again (an excerpt keeps its first line and its length); read the diff
before committing.  The guest programs listed in README.md and the
sections of guest_programs/README.md must be the bundled programs, and the
counters each section quotes are those of the program's run.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from emu.cli import main
from emu.programs import catalogue

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "guest_programs" / "README.md"]
REGEN = bool(os.environ.get("EMU_REGEN"))
MARKED = re.compile(r"<!-- (output|excerpt): (.+?) -->\n+```\w*\n(.*?)```", re.S)
_outputs: dict[str, list[str]] = {}


def output_of(command: str) -> list[str]:
    """The lines ``command`` prints (standard output), trailing blanks stripped."""
    if command not in _outputs:
        words = shlex.split(command)
        if words[0] == "emu":
            out = io.StringIO()
            cwd = os.getcwd()
            try:
                os.chdir(ROOT)
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                    main(words[1:])
            finally:
                os.chdir(cwd)
            text = out.getvalue()
        else:
            assert words[:2] == ["python", "-m"], command
            text = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True,
                                  cwd=ROOT, timeout=300).stdout
        _outputs[command] = [line.rstrip() for line in text.splitlines()]
    return _outputs[command]


def blocks(path: pathlib.Path):
    return list(MARKED.finditer(path.read_text()))


def find_run(lines: list[str], part: list[str]) -> int:
    for i in range(len(lines) - len(part) + 1):
        if lines[i:i + len(part)] == part:
            return i
    return -1


def shown(match) -> list[str]:
    return [line.rstrip() for line in match[3].splitlines()]


def regenerate(path: pathlib.Path) -> None:
    text = path.read_text()
    for m in reversed(blocks(path)):
        lines = output_of(m[2])
        if m[1] == "output":
            new = lines
        else:
            old = shown(m)
            # where it began: that line, or the one sharing the longest start with it
            # (a figure in it changed)
            common = [len(os.path.commonprefix([line, old[0]])) for line in lines]
            best = max(common, default=0)
            assert best >= 6, f"{path.name}: the excerpt of '{m[2]}' begins with a line it " \
                              f"no longer prints: {old[0]!r}"
            start = common.index(best)
            new = lines[start:start + len(old)]
        text = text[:m.start(3)] + "".join(line + "\n" for line in new) + text[m.end(3):]
    path.write_text(text)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_marked_output_is_what_the_command_prints(path):
    if REGEN:
        regenerate(path)
    found = blocks(path)
    assert len(found) >= 2
    for m in found:
        lines, block = output_of(m[2]), shown(m)
        assert block, m[2]
        if m[1] == "output":
            assert block == lines, f"{path.name}: the output of '{m[2]}' differs"
        else:
            assert find_run(lines, block) >= 0, f"{path.name}: '{m[2]}' prints no such lines"


def test_no_output_block_is_left_unmarked():
    """A block that looks like emu's output (a summary, a table, a fault)
    must have a marker."""
    looks = re.compile(r"^(── \w|run poweroff|config +cycles|compare \w|\d VMs on )", re.M)
    for path in DOCS:
        text = path.read_text()
        marked = [(m.start(3), m.end(3)) for m in blocks(path)]
        for block in re.finditer(r"```\w*\n(.*?)```", text, re.S):
            if looks.search(block[1]):
                assert any(a <= block.start(1) < b for a, b in marked), \
                    f"{path.name}: unmarked output:\n{block[1][:200]}"


# --- the guest programs ---------------------------------------------------------------
BUNDLED = sorted(name for name, _ in catalogue())


def test_the_readme_lists_every_bundled_guest():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The guest programs"):]
    section = section[:section.index("\n## ", 5)]
    listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert sorted(listed) == BUNDLED
    titles = dict(catalogue())
    for name in listed:
        assert re.search(rf"^\| `{name}` \| .+ \|$", section, re.M)
        assert titles[name]


def test_the_guest_readme_has_a_section_for_every_bundled_guest():
    text = (ROOT / "guest_programs" / "README.md").read_text()
    sections = re.findall(r"^#{2,3} (\w+)$", text, re.M)
    assert sorted(s for s in sections if s in BUNDLED) == BUNDLED
    order = re.search(r"Read the programs in this order: (.*?)\.\n\n", text, re.S)[1]
    named = re.findall(r"\b\w+\b", order.replace("and the bad guests last", ""))
    assert sorted(named) == sorted(n for n in BUNDLED if not n.startswith("bad_"))


def summary_counters(name: str, mode: str = "shadow") -> dict[str, str]:
    """label -> value of each row of ``emu run NAME``'s summary."""
    rows = {}
    for line in output_of(f"emu run {name} --mode {mode}"):
        m = re.match(r"^(\S.*?)\s{2,}([\d,]+(?: \([\d,]+\))?)(?:\s|$)", line)
        if m:
            rows.setdefault(m[1], m[2])
        t = re.match(r"^(itlb|dtlb|tlb)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", line)
        if t:
            rows[f"{t[1]} misses"] = t[4]
    return rows


def sections(text: str) -> dict[str, str]:
    out, parts = {}, re.split(r"^#{2,3} (\w+)\n", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        out[name] = body
    return out


def test_the_counters_each_guest_section_quotes_are_its_runs():
    text = (ROOT / "guest_programs" / "README.md").read_text()
    checked = 0
    for name, body in sections(text).items():
        if name not in BUNDLED:
            continue
        m = re.search(r"Counters: (.*?)(?:\n\n|$)", body, re.S)
        if not m:
            continue
        shadow, native = summary_counters(name), summary_counters(name, "native")
        paragraph = " ".join(m[1].split())
        for item in re.findall(r"`([^`]+?) ([\d,]+)`", paragraph):
            label, value = item
            assert shadow.get(label) == value, (name, label, value, shadow.get(label))
            checked += 1
        pairs = r"(dtlb misses|Cycles:) ([\d,]+) natively,? (?:and )?([\d,]+) under shadow"
        for which, native_value, shadow_value in re.findall(pairs, paragraph):
            key = "dtlb misses" if which == "dtlb misses" else "cycles"
            assert (native[key], shadow[key]) == (native_value, shadow_value), (name, which)
            checked += 1
    assert checked >= 40


def test_the_readmes_python_api_example_runs_as_written(capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The Python API"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    exec(compile(code, "README.md", "exec"), {})
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("{'true': 13, 'hidden': 38, 'dirty': 1, 'tracing': 14, 'unsync': 0, "
                         "'wp-emulate': 0, 'cow': 0}")
