"""emu: a teaching emulator of memory virtualization.

A tiny x86-like CPU with IA-32 paging and a TLB runs guest kernels natively
or under a VMM that virtualizes memory with shadow page tables.  The public
surface::

    image = assemble(source)            # or assemble_file(path)
    system = System(image, Config(mode="shadow"))
    system.bus.subscribe(print)         # every trace event, as it happens
    result = system.run()               # outcome, console, registers, stats

``run(image, config)`` does the last two lines at once.
"""

__version__ = "0.1.0"      # the one place the version is written (pyproject reads it)

from .asm import Image, assemble, assemble_file
from .errors import AsmError, ConfigError, EmuError
from .programs import resolve as find_program
from .system import MODES, Config, Result, System, run
from .trace import Event, TraceBus

__all__ = [
    "__version__", "MODES", "AsmError", "Config", "ConfigError", "EmuError", "Event", "Image",
    "Result", "System", "TraceBus", "assemble", "assemble_file", "find_program", "run",
]
