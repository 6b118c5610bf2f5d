"""Set-up every test process shares: the suite runs the same whatever
started it.

* SIGINT is Python's own (``KeyboardInterrupt``) in the runner and in its
  workers, as in a terminal: a shell runs a background job (``pytest &`` in
  a script) with SIGINT ignored, and an ignored signal stays ignored in
  every child.  The tests that send a Ctrl-C to ``emu`` expect the
  terminal's case; the tests of an ignored SIGINT set it up themselves.
* The output is what a file gets: as wide as a terminal of 80 columns,
  the width the expected outputs were written at, and without colour.
  What ``rich`` reads to change that (``COLUMNS``, ``LINES``,
  ``FORCE_COLOR`` ...) is not passed on.
"""

import os
import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
             "JUPYTER_COLUMNS", "JUPYTER_LINES"):
    os.environ.pop(name, None)
