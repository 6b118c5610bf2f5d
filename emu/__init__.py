"""emu: a teaching emulator of memory virtualization.

A tiny x86-like CPU with IA-32 paging and a TLB runs guest kernels natively
or under a VMM that virtualizes memory with shadow page tables (or nested
paging).  The public surface (``docs/api.md`` has an example of each)::

    image = assemble_file(find_program("demand"))   # or assemble(source)
    system = System(image, Config(mode="shadow"))
    system.bus.subscribe(print)         # every trace event, as it happens
    result = system.run()               # outcome, console, registers, stats

    run(image, config)                  # the last two lines at once
    compare(image)                      # native, each shadow policy, nested
    build_stories(events, "shadow")     # the events of each fault, by step

In a notebook a ``Result``, a ``Comparison`` and a ``FaultStory`` display
as rich HTML.
"""

__version__ = "0.1.0"      # the one place the version is written (pyproject reads it)

from .asm import Image, assemble
from .compare import Comparison, compare, configurations
from .errors import AsmError, ConfigError, EmuError
from .kinds import EVENT_KINDS
from .programs import assemble_file
from .programs import resolve as find_program
from .story import FaultStory, StoryBuilder, build_stories
from .system import MODES, Config, Result, System, run
from .trace import Event, TraceBus


def _attach_html_views() -> None:
    """Jupyter shows an object's ``_repr_html_``.  The views are rich
    renderables (``emu.ui``), imported only when one is shown, so the
    layers below the user interface import no rich."""
    def result_html(self) -> str:
        from .ui.html import result_html
        return result_html(self)

    def comparison_html(self) -> str:
        from .ui.html import comparison_html
        return comparison_html(self)

    def story_html(self) -> str:
        from .ui.html import story_html
        return story_html(self)
    Result._repr_html_ = result_html
    Comparison._repr_html_ = comparison_html
    FaultStory._repr_html_ = story_html


_attach_html_views()

__all__ = [
    "__version__", "EVENT_KINDS", "MODES", "AsmError", "Comparison", "Config", "ConfigError",
    "EmuError", "Event", "FaultStory", "Image", "Result", "StoryBuilder", "System", "TraceBus",
    "assemble", "assemble_file", "build_stories", "compare", "configurations", "find_program",
    "run",
]
