# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the report's charts, drawn with matplotlib when it is installed.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): charts of replay progress over a run.

matplotlib is an optional controller requirement: :func:`load_matplotlib` returns None
when it cannot be imported, and the report then shows tables instead. The object API
(``Figure`` + the Agg canvas) is used, never ``pyplot``: no global state, no display
needed, and the PNG bytes are the same for the same data (no timestamp in the metadata).
"""

from __future__ import annotations

import io

CHART_NAMES = ("progress", "rate", "apply-lag", "replication-lag")

# (name, title, point key, y label, threshold key)
_CHARTS = (
    ("progress", "Events replayed per partition (% of the partition's total)", "pct", "% done", None),
    ("rate", "Replay rate per partition", "rate_eps", "events/s", None),
    ("apply-lag", "Apply lag per partition", "apply_lag_ms", "ms", "apply_lag_ms"),
    ("replication-lag", "Replication lag per partition", "replication_lag_ms", "ms", "replication_lag_ms"),
)


def load_matplotlib():
    """(Figure class, Agg canvas class, version) or None when matplotlib is not installed."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg, matplotlib.__version__


def render_charts(model, width_in=9.0, height_in=3.0, dpi=100):
    """[{"name", "title", "png"}] for the model's replay progress, [] without progress.

    Raises ImportError when matplotlib is not installed (check :func:`load_matplotlib`).
    """
    loaded = load_matplotlib()
    if loaded is None:
        raise ImportError("matplotlib is not installed")
    figure_cls, canvas_cls, dummy = loaded
    series = model.get("progress") or {}
    if not series:
        return []
    span = max([p["elapsed_s"] for points in series.values() for p in points] or [0])
    scale, unit = (60.0, "minutes") if span > 600 else (1.0, "seconds")
    charts = []
    for name, title, key, ylabel, threshold_key in _CHARTS:
        fig = figure_cls(figsize=(width_in, height_in), dpi=dpi)
        canvas_cls(fig)
        ax = fig.add_subplot(1, 1, 1)
        drawn = False
        for part_id, points in series.items():
            xs = [p["elapsed_s"] / scale for p in points if p.get(key) is not None]
            ys = [p[key] for p in points if p.get(key) is not None]
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label="p%s" % part_id)
                drawn = True
        threshold = (model.get("thresholds") or {}).get(threshold_key) if threshold_key else None
        if threshold is not None:
            ax.axhline(threshold, color="#cf222e", linestyle="--", linewidth=1, label="limit %.0f ms" % threshold)
        if not drawn:
            ax.text(0.5, 0.5, "no %s figures recorded" % ylabel, transform=ax.transAxes, ha="center", va="center",
                    color="#57606a")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("%s since the first progress record" % unit)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if key == "pct":
            ax.set_ylim(0, 105)
        else:
            ax.set_ylim(bottom=0)
        if drawn or threshold is not None:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        # the same margins on every chart, so their time axes line up on the page
        fig.subplots_adjust(left=0.08, right=0.84, top=0.88, bottom=0.17)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        charts.append({"name": name, "title": title, "png": buf.getvalue()})
    return charts
