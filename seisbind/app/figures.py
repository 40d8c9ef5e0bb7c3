"""The app's pictures, without a UI: the query, the hits and the map of the joint space.

Matplotlib figures are made with ``matplotlib.figure.Figure`` (never pyplot's global state), so
concurrent requests draw on their own canvases. The map is a Plotly figure, for its hover text.
"""

from __future__ import annotations

import html
import textwrap

import numpy as np

from seisbind.app.backend import Answer, JointMap
from seisbind.modalities import ModalityType

COMPONENTS = "ZNE"
SYMBOLS = {ModalityType.IMAGE: "circle", ModalityType.WAVEFORM: "diamond"}
NAMES = {ModalityType.IMAGE: "section", ModalityType.WAVEFORM: "record"}


def record_section(waveforms: np.ndarray, sampling_rate: float, component: str = "Z",
                   station_x_m: np.ndarray | None = None, spacing_m: float = 1.0, title: str = ""):  # fmt: skip
    """A record section of (stations, 3, T) waveforms: one trace of ``component`` per station,
    drawn at the station's position (or on a line ``spacing_m`` apart), time downwards."""
    from matplotlib.figure import Figure

    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {', '.join(COMPONENTS)}, got {component!r}")
    c = COMPONENTS.index(component)
    stations, _, samples = waveforms.shape
    assumed = station_x_m is None
    x = np.arange(stations) * spacing_m if assumed else np.asarray(station_x_m, float)
    gaps = np.diff(np.sort(x))
    gap = float(np.median(gaps)) if len(gaps) and np.median(gaps) > 0 else spacing_m
    t = np.arange(samples) / sampling_rate
    fig = Figure(figsize=(6.4, 4.0), dpi=90)
    ax = fig.add_subplot()
    for k in range(stations):
        trace = np.asarray(waveforms[k, c], float)
        ax.plot(x[k] + 0.45 * gap * trace / (np.abs(trace).max() or 1.0), t, "k", lw=0.5)
    ax.set_ylim(t[-1] if samples > 1 else 1.0, 0.0)
    where = f"on a line {spacing_m:g} m apart (no positions: as the model assumes)" if assumed else "at their positions"
    ax.set_xlabel(f"station position (m), {where}", fontsize=8)
    ax.set_ylabel("time (s)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{title}\n{component} component, {stations} stations, {sampling_rate:g} Hz", fontsize=9)
    fig.tight_layout()
    return fig


def section_figure(section: np.ndarray, title: str = ""):
    """An (H, W) section, drawn as the hits' section tiles are."""
    from matplotlib.figure import Figure

    from seisbind.search.answers import Tile, draw_tile

    fig = Figure(figsize=(4.8, 4.0), dpi=90)
    draw_tile(fig.add_subplot(), Tile("image", title, data=section))
    fig.tight_layout()
    return fig


def query_figure(answer: Answer, sampling_rate: float, spacing_m: float, component: str = "Z"):
    """The query: a record section (waveforms), the section image, or the sentence."""
    if answer.modality == "text":
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.8, 2.0), dpi=90)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, textwrap.fill(str(answer.query), 48), ha="center", va="center", fontsize=11)
        ax.set_axis_off()
        ax.set_title("text query", fontsize=9)
        return fig
    if answer.waveform_query:
        return record_section(answer.query, sampling_rate, component, answer.station_x_m, spacing_m, answer.source)
    return section_figure(answer.query, answer.source)


def tile_image(tile, size: tuple[float, float] = (3.4, 3.0), dpi: int = 90) -> np.ndarray:
    """(H, W, 3) uint8 picture of one hit's ``answers.Tile``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from seisbind.search.answers import draw_tile

    fig = Figure(figsize=size, dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    draw_tile(fig.add_subplot(), tile)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _hover(row: dict, colour: str) -> str:
    from seisbind.search.answers import cell, hit_columns

    lines = [f"<b>{html.escape(str(row.get('id') or ''))}</b>", f"{NAMES.get(row.get('modality'), row.get('modality'))}"]
    for column in hit_columns(row):
        if column != "id":
            text = "<br>".join(html.escape(part) for part in textwrap.wrap(cell(row, column), 60))
            lines.append(f"{html.escape(column)}: {text}")
    if colour not in ("modality", "family") and row.get(colour) is not None:
        lines.append(f"{html.escape(colour)}: {html.escape(_fmt(row[colour]))}")
    return "<br>".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def map_figure(jmap: JointMap, colour: str = "family", answer: Answer | None = None):
    """Plotly scatter of the map coloured by ``colour``; sections and records marked differently;
    the query (placed on the map) and its hits highlighted. Hover shows each item's metadata."""
    import plotly.graph_objects as go

    table = jmap.table
    if colour not in {k for row in table for k in row}:
        colour = "modality"
    values = [row.get(colour) for row in table]
    symbols = [SYMBOLS.get(row.get("modality"), "square") for row in table]
    if colour not in jmap.hover:  # built once per colour: 5,000 texts take about a second
        jmap.hover[colour] = [_hover(row, colour) for row in table]
    hover = jmap.hover[colour]
    fig = go.Figure()
    present = [v for v in values if v is not None]
    # measured values (floats) get a colour scale; names, flags and counts a colour each
    numeric = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present) \
        and any(isinstance(v, float) for v in present)  # fmt: skip
    if numeric:
        fig.add_trace(go.Scattergl(x=jmap.xy[:, 0], y=jmap.xy[:, 1], mode="markers", name=colour, text=hover,
                                   hovertemplate="%{text}<extra></extra>",
                                   marker=dict(color=[np.nan if v is None else v for v in values], colorscale="Viridis",
                                               symbol=symbols, size=7, colorbar=dict(title=colour), opacity=0.8)))  # fmt: skip
    else:
        for value in sorted({_fmt(v) for v in values}):
            keep = [i for i, v in enumerate(values) if _fmt(v) == value]
            fig.add_trace(go.Scattergl(x=jmap.xy[keep, 0], y=jmap.xy[keep, 1], mode="markers", name=value,
                                       text=[hover[i] for i in keep], hovertemplate="%{text}<extra></extra>",
                                       marker=dict(symbol=[symbols[i] for i in keep], size=7, opacity=0.8)))  # fmt: skip
    if answer is not None:
        hits = jmap.points_of_rows(answer.rows)
        if len(hits):
            fig.add_trace(go.Scatter(x=jmap.xy[hits, 0], y=jmap.xy[hits, 1], mode="markers", name=f"top {len(answer.rows)} hits",
                                     text=[hover[i] for i in hits], hovertemplate="hit<br>%{text}<extra></extra>",
                                     marker=dict(symbol="circle-open", size=16, color="red", line=dict(width=2))))  # fmt: skip
        qx, qy = jmap.place(answer.embedding)
        how = "its transform" if jmap.reducer is not None else "the mean of its nearest map points"
        fig.add_trace(go.Scatter(x=[qx], y=[qy], mode="markers", name="query",
                                 text=[f"<b>query</b><br>{html.escape(answer.source)}<br>placed by {how}"],
                                 hovertemplate="%{text}<extra></extra>",
                                 marker=dict(symbol="star", size=20, color="red",
                                             line=dict(width=1, color="black"))))  # fmt: skip
    shown = f"{len(table)} of {jmap.total} items (a seeded sample)" if len(table) < jmap.total else f"{len(table)} items"
    marks = ", ".join(f"{SYMBOLS[m]}: {NAMES[m]}" for m in SYMBOLS if any(r.get("modality") == m for r in table))
    title = f"{jmap.method} of the joint space: {shown}; {marks}; colour: {colour}"
    fig.update_layout(title=dict(text=title, font=dict(size=13)),
                      height=560, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white",
                      legend=dict(itemsizing="constant"), xaxis=dict(visible=False), yaxis=dict(visible=False))  # fmt: skip
    return fig
