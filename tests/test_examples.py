"""Every example runs and prints exactly its recorded output."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py"))


def test_every_example_has_an_expected_output():
    assert SCRIPTS
    for name in SCRIPTS:
        assert (EXAMPLES / "expected" / f"{name}.txt").exists(), name


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_output(name):
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (EXAMPLES / "expected" / f"{name}.txt").read_text()
