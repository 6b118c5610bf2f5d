"""Rich renderables as HTML, for notebooks (``_repr_html_``).

Jupyter shows an object's ``_repr_html_()``: a run result, a fault story
and a comparison render themselves with rich, and rich's HTML export turns
the recording into a ``<pre>`` block with inline styles (no stylesheet to
load, so it survives being saved in a notebook).
"""

from __future__ import annotations

import io

from rich.console import Console

PRE = ('<pre style="white-space:pre;overflow-x:auto;line-height:1.25;'
       "font-family:Menlo,'DejaVu Sans Mono',Consolas,monospace\">{code}</pre>")


def to_html(renderable, width: int = 100) -> str:
    """``renderable`` as an HTML fragment, ``width`` columns wide."""
    # (force_jupyter=False: inside a notebook rich would also display what it
    # prints, and each view would show twice)
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True,
                      force_jupyter=False, color_system="truecolor", highlight=False,
                      emoji=False)
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format=PRE)


def result_html(result) -> str:
    """``Result._repr_html_``: the summary ``emu run`` prints."""
    from .summary import summary
    return to_html(summary(result))


def comparison_html(cmp) -> str:
    """``Comparison._repr_html_``: ``emu compare``'s table and chart."""
    from .compare import render
    return to_html(render(cmp, cmp.program or "", width=100))


def story_html(story) -> str:
    """``FaultStory._repr_html_``: the story as the narration tells it."""
    from .narrate import story_text
    return to_html(story_text(story))
