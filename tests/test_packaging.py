"""The distribution as a user installs it: ``python -m build`` and ``twine check``.

One build per session (a module fixture): the project's files as git knows
them (tracked, or new and not ignored) are copied to a clean folder, so
that nothing a developer's tree holds (caches, byte code, a virtualenv)
can reach the sdist, and built there without isolation (setuptools is
the test environment's own: no network).  The sdist, and the wheel
built from it, must come with no warning.
"""

from __future__ import annotations

import email
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import emu
from emu.programs import catalogue

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME = "shadowpaging-emu"
STEM = f"shadowpaging_emu-{emu.__version__}"

pytest.importorskip("build", reason="the test extra installs build")


def project_files() -> list[str]:
    """Tracked files and new files that git does not ignore."""
    done = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return sorted(p for p in done.stdout.split("\0") if p and (ROOT / p).is_file())


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the packaging test needs the git checkout (git ls-files)")
    src = tmp_path_factory.mktemp("src")
    for rel in project_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out),
                           str(src)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout + done.stderr


def test_the_build_gives_an_sdist_and_a_wheel_without_warnings(dist):
    out, log = dist
    assert sorted(p.name for p in out.iterdir()) == [
        f"{STEM}-py3-none-any.whl", f"{STEM}.tar.gz"]
    warnings = [line for line in log.splitlines()
                if "warning" in line.lower() or "deprecat" in line.lower()]
    assert warnings == []


def test_twine_check_passes_strict(dist):
    out, _ = dist
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           *sorted(map(str, out.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_metadata_name_version_license(dist):
    out, _ = dist
    with tarfile.open(out / f"{STEM}.tar.gz") as tar:
        meta = email.message_from_bytes(tar.extractfile(f"{STEM}/PKG-INFO").read())
    assert meta["Name"] == NAME
    assert meta["Version"] == emu.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert f"pip install {NAME}" in meta.get_payload()      # the README says how


def test_the_sdist_carries_the_tests_docs_guests_and_examples(dist):
    out, _ = dist
    with tarfile.open(out / f"{STEM}.tar.gz") as tar:
        names = {n[len(STEM) + 1:] for n in tar.getnames()}
    wanted = [p for p in project_files()
              if p.split("/")[0] in ("tests", "docs", "guest_programs", "examples", "emu",
                                     "benchmarks", "scripts")
              or p in ("LICENSE", "README.md", "pyproject.toml", "MANIFEST.in")]
    assert [p for p in wanted if p not in names] == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_wheel_installs_every_bundled_guest_and_the_command(dist):
    out, _ = dist
    with zipfile.ZipFile(out / f"{STEM}-py3-none-any.whl") as whl:
        names = set(whl.namelist())
        info = f"{STEM}.dist-info"
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert "emu = emu.cli:entry" in entry_points
    assert f"{info}/licenses/LICENSE" in names
    expected = ROOT / "guest_programs" / "expected"
    for name, _ in catalogue():
        assert f"emu/guest_programs/{name}.s" in names
        assert f"emu/guest_programs/expected/{name}.txt" in names
        if (expected / f"{name}.outcome").exists():
            assert f"emu/guest_programs/expected/{name}.outcome" in names
    for inc in (ROOT / "guest_programs" / "include").glob("*.inc"):
        assert f"emu/guest_programs/include/{inc.name}" in names
    for sub in (ROOT / "emu").rglob("*.py"):
        rel = sub.relative_to(ROOT).as_posix()
        assert rel in names, rel


def test_version_option_and_attribute():
    done = subprocess.run([sys.executable, "-m", "emu", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"emu {emu.__version__}\n", "")
    from importlib.metadata import version
    assert version(NAME) == emu.__version__
