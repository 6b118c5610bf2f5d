"""Set-up every test process shares.

SIGINT is Python's own (``KeyboardInterrupt``) in the runner and in its
workers, as in a terminal, whatever started the suite: a shell runs a
background job (``pytest &`` in a script) with SIGINT ignored, and an
ignored signal stays ignored in every child.  The tests that send a Ctrl-C
to ``emu`` expect the terminal's case; the tests of an ignored SIGINT set
it up themselves.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
