"""The Gradio page of ``seisbind app``: query, answers, the map; served on 127.0.0.1 only.

Nothing is fetched from the internet while it runs: Gradio's analytics and version check are off
(``GRADIO_ANALYTICS_ENABLED=False``, ``analytics_enabled=False``), there is no share link, no
server-side rendering (Node), no MCP server, and Gradio 6 serves its fonts (Source Sans Pro, IBM
Plex Mono) and Plotly's script from its own package. tests/test_app.py checks this: during the
browser test every connection outside 127.0.0.1, from the server or the page, is refused and
recorded, and none is made.

Elements the browser test reads have stable ``elem_id`` values (``seisbind-...``).
"""

from __future__ import annotations

import os

# Before gradio is imported: no telemetry, no version check against the internet.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from seisbind.app.backend import MAP_POINTS, AppBackend, Answer  # noqa: E402
from seisbind.app.figures import COMPONENTS, map_figure, query_figure, tile_image  # noqa: E402
from seisbind.io.batch import InputError  # noqa: E402
from seisbind.io.obspy_streams import WAVEFORM_FORMATS  # noqa: E402
from seisbind.modalities import ModalityType  # noqa: E402

HOST = "127.0.0.1"
# What a bad query raises: the CLI's one-line errors (the reader's InputError is a ValueError).
QUERY_ERRORS = (InputError, ValueError, FileNotFoundError)
TEXT_PLACEHOLDER = "layers cut by a reverse fault, site class D"
NO_TEXT = "This model has no text tower: text queries need a model trained with text (the quickstart's tiny-text)."


def _intro(backend: AppBackend) -> str:
    h, w = backend.image_size
    if backend.query_modality == ModalityType.WAVEFORM:
        what = (f"This index holds **sections**: query it with a **waveform record** (a file ObsPy reads, of the formats "
                f"{', '.join(WAVEFORM_FORMATS)}; never a pickle) or a `.npy` array (3, T) or (stations, 3, T) in ZNE "
                f"order at {backend.sampling_rate:g} Hz. A record gives its first {backend.window_seconds:g} s window "
                "(or the window from the start time you give).")  # fmt: skip
    else:
        what = (f"This index holds **waveform records**: query it with a **section**, a `.npy` (H, W) array or a "
                f"grey-level PNG, of the model's size {h} x {w} (other sizes are refused, not resized).")  # fmt: skip
    return f"## seisbind: search the joint space\n{backend.describe()}\n\n{what}"


def _table(answer: Answer):
    import pandas as pd

    return pd.DataFrame(answer.table(), columns=answer.columns())


def _gallery(backend: AppBackend, answer: Answer) -> list:
    out = []
    for rank, t in enumerate(backend.tiles(answer), start=1):
        out.append((tile_image(t), f"{rank}. " + " ".join(t.title.split())))
    return out


def build_page(backend: AppBackend, map_method: str = "tsne", map_points: int = MAP_POINTS):
    """The ``gradio.Blocks`` of the page (not launched). The map is computed here, once."""
    import gradio as gr

    jmap = backend.joint_map(map_method, map_points)
    colours = jmap.label_columns() if jmap is not None else []
    waveform_query = backend.query_modality == ModalityType.WAVEFORM

    def answered(answer: Answer, component: str, colour: str):
        figure = query_figure(answer, backend.sampling_rate, backend.station_spacing_m, component)
        rank = f"**{answer.true_match}**" if answer.true_match else ""
        chart = map_figure(jmap, colour, answer) if jmap is not None else None
        return (gr.update(value="", visible=False), figure, rank, _table(answer), _gallery(backend, answer), chart, answer)

    def failed(message: str, colour: str):
        chart = map_figure(jmap, colour) if jmap is not None else None
        return (gr.update(value=message, visible=True), None, "", None, [], chart, None)

    def on_file(path, k, window_seconds, starttime, component, colour):
        if not path:
            return failed("choose a file to upload first", colour)
        try:
            answer = backend.query_file(path, name=os.path.basename(path), k=int(k),
                                        window_seconds=float(window_seconds) if window_seconds else None,
                                        starttime=(starttime or "").strip() or None)  # fmt: skip
        except QUERY_ERRORS as err:
            return failed(str(err), colour)
        return answered(answer, component, colour)

    def on_item(split, row, source, k, component, colour):
        try:
            answer = backend.query_item(split, int(row), int(source or 0), k=int(k))
        except QUERY_ERRORS as err:
            return failed(str(err), colour)
        return answered(answer, component, colour)

    def on_text(sentence, k, component, colour):
        try:
            answer = backend.query_text(sentence, k=int(k))
        except QUERY_ERRORS as err:
            return failed(str(err), colour)
        return answered(answer, component, colour)

    def on_component(answer, component):
        return None if answer is None else query_figure(answer, backend.sampling_rate, backend.station_spacing_m, component)

    def on_colour(answer, colour):
        return map_figure(jmap, colour, answer) if jmap is not None else None

    # delete_cache: uploads older than an hour leave Gradio's temporary folder, checked hourly
    with gr.Blocks(title="seisbind", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        state = gr.State(None)
        gr.Markdown(_intro(backend), elem_id="seisbind-intro")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tab("upload a file"):
                    upload = gr.File(label="waveform record or section (searched on upload)", type="filepath",
                                     elem_id="seisbind-upload")  # fmt: skip
                    with gr.Row():
                        window = gr.Number(backend.window_seconds, label="window (s)", minimum=0, visible=waveform_query,
                                           elem_id="seisbind-window")  # fmt: skip
                        start = gr.Textbox(label="start time (UTC, optional)", placeholder="2026-01-01T03:12:40",
                                           visible=waveform_query, elem_id="seisbind-starttime")  # fmt: skip
                    search = gr.Button("search", variant="primary", elem_id="seisbind-search")
                with gr.Tab("a dataset item"):
                    if backend.data:
                        splits = backend.splits()
                        held = backend.indexed_split()
                        split = gr.Dropdown(list(splits), value=held or next(iter(splits)), label="split",
                                            info=f"the index holds items of {held}" if held else "the index holds none",
                                            elem_id="seisbind-split")  # fmt: skip
                        row = gr.Number(0, label="row", precision=0, minimum=0, elem_id="seisbind-row")
                        source = gr.Number(0, label="source (which record of the row)", precision=0, minimum=0,
                                           visible=waveform_query, elem_id="seisbind-source")  # fmt: skip
                        item_search = gr.Button("search with this item", variant="primary", elem_id="seisbind-item-search")
                    else:
                        gr.Markdown("Start the app with `--data DIR` to query with the items of a dataset.")
                with gr.Tab("text"):
                    text_box = gr.Textbox(label="text query (bound to the sections in training; records are found "
                                                "through them)", interactive=backend.has_text, elem_id="seisbind-text",
                                          placeholder=TEXT_PLACEHOLDER if backend.has_text else NO_TEXT)  # fmt: skip
                    text_search = gr.Button("search with this text", variant="primary", interactive=backend.has_text,
                                            elem_id="seisbind-text-search")  # fmt: skip
                k = gr.Slider(1, min(50, backend.index.info["count"]), value=min(backend.k, backend.index.info["count"]),
                              step=1, label="results (k)", elem_id="seisbind-k")  # fmt: skip
            with gr.Column(scale=3):
                error = gr.Textbox(label="error", visible=False, interactive=False, elem_id="seisbind-error")
                query_plot = gr.Plot(label="query", format="png", elem_id="seisbind-query")
                component = gr.Radio(list(COMPONENTS), value="Z", label="component drawn", visible=waveform_query,
                                     elem_id="seisbind-component")  # fmt: skip
                rank = gr.Markdown(elem_id="seisbind-rank")
        table = gr.Dataframe(label="top-k results", interactive=False, wrap=True, elem_id="seisbind-hits")
        gallery = gr.Gallery(label="the results, drawn from their sources", columns=5, height=300, format="png",
                             object_fit="contain", elem_id="seisbind-hit-images")  # fmt: skip
        if jmap is not None:
            colour = gr.Dropdown(colours, value=colours[0], label="colour the map by", elem_id="seisbind-colour")
            map_plot = gr.Plot(map_figure(jmap, colours[0]), label="map of the joint space", elem_id="seisbind-map")
        else:
            colour = gr.State("family")
            map_plot = gr.State(None)
            gr.Markdown("No map of the joint space (`--map none`, or fewer than 4 items).")
        outputs = [error, query_plot, rank, table, gallery, map_plot, state]
        file_inputs = [upload, k, window, start, component, colour]
        upload.upload(on_file, file_inputs, outputs)
        search.click(on_file, file_inputs, outputs)
        if backend.data:
            item_search.click(on_item, [split, row, source, k, component, colour], outputs)
        if backend.has_text:
            text_search.click(on_text, [text_box, k, component, colour], outputs)
            text_box.submit(on_text, [text_box, k, component, colour], outputs)
        component.change(on_component, [state, component], query_plot)
        if jmap is not None:
            colour.change(on_colour, [state, colour], map_plot)
    return page


def check_port(port: int, host: str = HOST) -> None:
    """A one-line ValueError when ``host:port`` cannot be served (taken by another server)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no obstacle
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ValueError(f"port {port} on {host} is taken ({err.strerror}); choose another with --port") from None


def serve(page, port: int, block: bool = True):
    """Launch ``page`` on 127.0.0.1:``port`` (never a share link); ``block=False`` returns at once
    (``page.close()`` stops it)."""
    check_port(port)
    page.queue(default_concurrency_limit=4)  # the backend serialises model calls; reading and drawing overlap
    page.launch(server_name=HOST, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                quiet=True, show_error=False, ssr_mode=False, mcp_server=False, pwa=False)  # fmt: skip
    return page
