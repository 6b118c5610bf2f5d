"""The example notebook runs top to bottom in a Jupyter kernel, and each
rich view (a Result, a FaultStory, a Comparison) displays as HTML with
what the command line would print."""

from __future__ import annotations

import html
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the notebook is kept without outputs"
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def html_output(cell) -> str:
    outs = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(outs) == 1 and "text/html" in outs[0].data
    return text_of(outs[0].data["text/html"])


def test_the_notebook_runs_without_errors(executed):
    for cell in executed:
        assert not [o for o in cell.outputs if o.output_type == "error"]


def test_each_view_shows_once(executed):
    # (rich, asked for HTML inside a kernel, must not display it besides)
    for cell in executed:
        assert not [o for o in cell.outputs if o.output_type == "display_data"]


def test_a_result_displays_as_the_run_summary(executed):
    text = html_output(executed[0])
    assert "run poweroff — powered off with status 0" in text
    assert "hidden faults" in text and "cycles by category" in text


def test_a_fault_story_displays_as_the_narration(executed):
    text = html_output(executed[1])
    assert text.splitlines()[0].startswith("── true fault at va 0x007ffffc (write, user)")
    assert " 3 true fault: the guest's own table denies it; inject #PF (error 0x6)" in text
    hidden = executed[2]
    printed = "".join(o.text for o in hidden.outputs if o.output_type == "stream")
    assert printed == "66 faults, 38 of them hidden from the guest\n"
    assert html_output(hidden).startswith("── hidden fault at va 0x00001000 (fetch, kernel)")


def test_a_comparison_displays_as_emu_compare(executed):
    text = html_output(executed[3])
    assert text.startswith("compare demand: guest-visible results identical in every "
                           "configuration")
    for label in ("native", "shadow trace-cache", "shadow oos-drop", "nested"):
        assert label in text
