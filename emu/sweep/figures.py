"""SVG figures for the report, drawn with matplotlib (its object API: no
pyplot, no global backend).  The files are reproducible: no date, fixed
element ids, text kept as text."""

from __future__ import annotations

from .tables import Figure, SectionData

WIDTH_IN = 9.0          # inches (legends of line plots sit on the right)
HEIGHT_IN = 3.2
LINE_STYLES = ("-", "--", ":", "-.")


def draw(section: SectionData, path: str) -> None:
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    fig_spec: Figure = section.figure
    with matplotlib.rc_context({"svg.hashsalt": "emu-sweep", "svg.fonttype": "none",
                                "font.size": 9}):
        fig = MplFigure(figsize=(WIDTH_IN, HEIGHT_IN * len(fig_spec.panels)),
                        layout="constrained")
        axes = fig.subplots(len(fig_spec.panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, fig_spec.panels):
            if fig_spec.kind == "bars":
                _bars(ax, panel)
            else:
                _lines(ax, panel, fig_spec.log2x)
            ax.set_ylabel(panel.ylabel)
            ys = [y for _, _, values in panel.series for y in values if y is not None]
            if panel.logy and ys and min(ys) > 0:    # a zero has no place on a log scale
                ax.set_yscale("log")
            ax.grid(True, axis="y", alpha=0.3)
        axes[-1].set_xlabel(fig_spec.xlabel)
        fig.suptitle(fig_spec.title)
        fig.savefig(path, format="svg", metadata={"Date": None})


def _bars(ax, panel) -> None:
    if not panel.series:
        return
    categories = panel.series[0][1]
    n = len(panel.series)
    width = 0.8 / n
    for i, (name, _, values) in enumerate(panel.series):
        xs = [c + (i - (n - 1) / 2) * width for c in range(len(categories))]
        ax.bar(xs, [0 if v is None else v for v in values], width, label=name)
    ax.set_xticks(range(len(categories)), categories)
    ax.legend(fontsize=7, ncols=min(n, 4))


def _lines(ax, panel, log2x: bool) -> None:
    for i, (name, xs, ys) in enumerate(panel.series):
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        # Past the 10 colours of the cycle, another line style: no two series alike.
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name,
                linestyle=LINE_STYLES[i // 10 % len(LINE_STYLES)])
    if log2x:
        from matplotlib.ticker import NullLocator, ScalarFormatter
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({x for _, xs, _ in panel.series for x in xs}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    if panel.series:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
