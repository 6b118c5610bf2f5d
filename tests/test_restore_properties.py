"""Time travel on random kernels: a run restored from a snapshot taken at any
point goes on exactly as the run that was never interrupted.

The kernels are the property tests' (``guestgen``): random page tables,
remaps, CR3 switches, self-modifying code, faults the guest handles -- and
garbage tables that end in a crash or a runaway.  Each runs natively, under
the four shadow policies and under nested paging; snapshots are taken at
random fractions of its instructions, and each one, restored and run to the
end, must give the rest of the trace and the same result
(``test_snapshot.check_restores``: console, registers, memory hash, every
counter).  The suite runs a few derandomized kernels; the long run, from
the repository's root::

    EMU_HYPOTHESIS=long EMU_EXAMPLES=600 pytest -n 0 tests/test_restore_properties.py

draws that many of each kind, from a fresh seed (``EMU_SEED`` sets one).
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestgen  # noqa: E402
from test_snapshot import check_restores  # noqa: E402

from emu import programs  # noqa: E402
from emu.asm import assemble  # noqa: E402
from emu.system import Config  # noqa: E402

LONG = os.environ.get("EMU_HYPOTHESIS") == "long"
KERNELS = settings(max_examples=int(os.environ.get("EMU_EXAMPLES", "600")) if LONG else 6,
                   derandomize=not LONG, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
SEEDED = seed(int(os.environ["EMU_SEED"])) if LONG and os.environ.get("EMU_SEED") \
    else (lambda test: test)
FRACTIONS = st.lists(st.floats(0.02, 0.98), min_size=1, max_size=3, unique=True)


def restores_everywhere(prog, fractions) -> None:
    """Every way to run ``prog``, restored from snapshots at ``fractions``
    of its instructions (at least one snapshot each: ``check_restores``)."""
    image = assemble(prog.source, prog.name, include_dirs=[str(programs.include_dir())])
    for mode, policy in guestgen.configs():
        fields = dict(prog.config_fields())
        if policy is not None:
            fields["shadow_policy"] = policy
        check_restores(image, Config(mode=mode, **fields), fractions=tuple(sorted(fractions)))


@KERNELS
@SEEDED
@given(guestgen.guest_programs(), FRACTIONS)
def test_generated_kernels_restore_exactly_from_random_points(prog, fractions):
    restores_everywhere(prog, fractions)


@KERNELS
@SEEDED
@given(guestgen.garbage_programs(), FRACTIONS)
def test_garbage_kernels_restore_exactly_from_random_points(prog, fractions):
    restores_everywhere(prog, fractions)
