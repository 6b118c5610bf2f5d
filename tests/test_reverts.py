"""The patches of tests/reverts/ (each undoes one invalidation fix, to show
the generator finds it: tests/reverts/README.md) still apply to the source."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATCHES = sorted((ROOT / "tests" / "reverts").glob("*.patch"))


def test_there_are_patches():
    assert [p.name for p in PATCHES] == ["pf-invalidates-va.patch", "pge-change-resyncs.patch"]


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.stem)
def test_the_patch_applies(patch):
    if shutil.which("git") is None:
        pytest.fail("git is needed to check the patches (git apply --check)")
    done = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
