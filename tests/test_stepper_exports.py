"""``emu step``'s exports for slides: ``--svg-each DIR`` (every screen, one
file each) and the ``export FILE`` command (the screen on show), checked
against the text the console printed."""

from __future__ import annotations

import re
import subprocess
import sys

from test_compare_cli import html_text, svg_lines

HEADER = "emu step demand.s ·"


def step(tmp_path, script: str, *args):
    path = tmp_path / "script.txt"
    path.write_text(script)
    return subprocess.run([sys.executable, "-m", "emu", "step", "demand", "--script",
                           str(path), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def screens(stdout: str) -> list[list[str]]:
    """Each screen the console drew: from its header to the next command."""
    out: list[list[str]] = []
    for line in stdout.splitlines():
        if line.startswith(HEADER):
            out.append([])
        elif line.startswith("(emu) ") and out and out[-1] is not None:
            out.append(None)
            continue
        if out and out[-1] is not None:
            out[-1].append(line.rstrip())
    return [s for s in out if s is not None]


def test_svg_each_writes_one_file_per_screen_with_that_screen(tmp_path):
    done = step(tmp_path, "next\nmicro\nmicro\n", "--svg-each", tmp_path / "shots")
    assert done.returncode == 0, done.stderr
    shown = screens(done.stdout)
    assert len(shown) == 4                          # the start and one per command
    files = sorted((tmp_path / "shots").iterdir())
    assert [f.name for f in files] == [f"screen-{i:03d}.svg" for i in range(1, 5)]
    for svg, screen in zip(files, shown):
        text = svg.read_text()
        assert svg_lines(text) == screen
        height = float(re.search(r'viewBox="0 0 [\d.]+ ([\d.]+)"', text)[1])
        assert height < 40 * 25                      # one screen, not a strip of them


def test_export_saves_the_screen_on_show_by_suffix(tmp_path):
    done = step(tmp_path, "next\nmicro\nexport shot.txt\nexport shot.svg\n"
                          "export shot.html\nstep\n")
    assert done.returncode == 0, done.stderr
    last = screens(done.stdout)[2]                   # the start, 'next', 'micro'
    assert [x.rstrip() for x in (tmp_path / "shot.txt").read_text().splitlines()] == last
    assert svg_lines((tmp_path / "shot.svg").read_text()) == last
    page = (tmp_path / "shot.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and html_text(page) == last
    for name in ("shot.txt", "shot.svg", "shot.html"):
        assert f"saved the screen to {name}" in done.stdout


def test_export_to_stdout_and_bad_names_go_on(tmp_path):
    done = step(tmp_path, "export -\nexport\nexport no/such/dir/x.svg\nexport shot.png\n"
                          "export slide\nstep\n")
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout
    assert "error: export takes a file name (FILE.svg, FILE.html or FILE.txt)" in done.stdout
    assert "error: cannot write no/such/dir/x.svg: No such file or directory" in done.stdout
    # a suffix it cannot write is refused, not written as SVG under that name
    assert ("error: export writes FILE.svg, FILE.html or FILE.txt, not .png: shot.png"
            in done.stdout)
    assert ("error: export writes FILE.svg, FILE.html or FILE.txt, not a name without a "
            "suffix: slide" in done.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script.txt"]
    assert len(screens(done.stdout)) == 2            # the session went on to 'step'


def test_svg_each_needs_a_folder_it_can_make(tmp_path):
    (tmp_path / "file").write_text("")
    for target, why in ((tmp_path / "file", "Not a directory"),
                        (tmp_path / "a" / "b", "No such file or directory")):
        done = step(tmp_path, "step\n", "--svg-each", target)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"emu: error: cannot write {target}: {why}\n"
    done = step(tmp_path, "step\n", "--svg-each", "-")
    assert done.stderr == "emu: error: a folder is needed here, not '-'\n"
