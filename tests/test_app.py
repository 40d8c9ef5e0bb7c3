"""Issue 16: ``seisbind app``. The backend answers as ``index query`` does (same hits, same one-line
errors), ranks a dataset item's true match as the index does, and maps the joint space; the page,
driven in a real headless Chromium, shows the top-k table and the hit images for an uploaded
miniSEED file, a bad file's one-line message, and answers the next good query. Nothing is fetched
from outside 127.0.0.1 meanwhile.

SEISBIND_SCREENSHOT=docs/app.png makes the browser test save its screenshot there (the README's).
"""

import importlib.util
import os
import re
import shutil
import socket
import time

import numpy as np
import obspy
import pytest
import torch

from seisbind.cli import main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.io.batch import InputError
from seisbind.io.embeddings import embedding_matrix, read_embeddings
from seisbind.models import create_model
from test_data_generate import TINY_QUAKE
from test_io_no_pickle import payload

GEOLOGIES = 12
WINDOW_S = TINY_QUAKE["window_seconds"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, a tiny model, its export (both modalities) and an index of each modality."""
    root = tmp_path_factory.mktemp("app")
    generate(root / "data", "quake", GEOLOGIES, config={**TINY_QUAKE, "image_height": 64, "image_width": 64},
             progress=False)  # fmt: skip
    torch.manual_seed(0)
    spacing = (TINY_QUAKE["width_m"] - 2 * TINY_QUAKE["station_margin_m"]) / (TINY_QUAKE["n_stations"] - 1)
    create_model("tiny", waveform={"station_spacing_m": spacing}).save_pretrained(root / "model")
    assert main(["export", "--model", str(root / "model"), "--data", str(root / "data"), "--split", "train",
                 "--out", str(root / "train.parquet"), "--no-progress"]) == 0  # fmt: skip
    for modality in ("image", "waveform"):
        assert main(["index", "build", "--embeddings", str(root / "train.parquet"), "--modality", modality,
                     "--out", str(root / f"{modality}-index")]) == 0  # fmt: skip
    return root


@pytest.fixture(scope="module")
def backend(setup):
    """Sections indexed: waveform queries."""
    from seisbind.app.backend import AppBackend

    return AppBackend(setup / "model", setup / "image-index", data=setup / "data", embeddings=setup / "train.parquet")


@pytest.fixture(scope="module")
def exported(setup):
    table, _ = read_embeddings(setup / "train.parquet")
    return embedding_matrix(table), table.column("id").to_pylist(), table.column("modality").to_pylist()


def write_mseed(waveforms: np.ndarray, path, rate=100.0):
    st = obspy.Stream()
    for k, station in enumerate(waveforms):
        for c, comp in enumerate("ZNE"):
            st.append(obspy.Trace(station[c].astype(np.float32).copy(),
                                  header={"network": "SB", "station": f"S{k:02d}", "channel": f"HH{comp}",
                                          "sampling_rate": rate, "starttime": obspy.UTCDateTime(2026, 1, 1)}))  # fmt: skip
    st.write(str(path), format="MSEED")
    return path


def cli_error(capsys, index, model, query_option, path) -> str:
    """The message `seisbind index query` prints for a bad query file (without its prefix)."""
    capsys.readouterr()
    assert main(["index", "query", "--index", str(index), "--model", str(model), query_option, str(path),
                 "--window-seconds", str(WINDOW_S)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("seisbind index: error: ") and "\n" not in err
    return err.removeprefix("seisbind index: error: ")


# --- the backend --------------------------------------------------------------------------------------


def test_a_miniseed_query_gives_what_index_query_gives(setup, backend, tmp_path):
    from seisbind.app.figures import query_figure
    from seisbind.search.answers import format_table, table_columns
    from seisbind.search.index_cli import query

    row = load_paired(setup / "data", "train")[2]
    path = write_mseed(row["waveforms"][0].numpy(), tmp_path / "q.mseed")
    answer = backend.query_file(path, name="q.mseed", k=4)
    assert len(answer.hits) == len(answer.scores) == len(answer.table()) == 4
    assert answer.columns() == ["rank", "score", *table_columns(answer.hits)] == ["rank", "score", "id", "family", "caption"]
    assert all(len(cells) == 5 and cells[2].startswith("train/geology-") for cells in answer.table())
    assert answer.query.shape == (TINY_QUAKE["n_stations"], 3, round(WINDOW_S * 100) + 1)  # the data's record length
    _, scores, hits, _ = query(str(setup / "image-index"), str(setup / "model"), waveform=str(path), k=4, window_seconds=WINDOW_S)
    np.testing.assert_allclose(answer.scores, scores, atol=1e-5)
    assert [h["id"] for h in answer.hits] == [h["id"] for h in hits]
    # the page's table holds the CLI's cells
    cli_lines = format_table(scores, hits).splitlines()[2:]
    assert [line.split(" | ")[2] for line in cli_lines] == [cells[2] for cells in answer.table()]
    # the record section: one trace per station, of the component chosen
    fig = query_figure(answer, backend.sampling_rate, backend.station_spacing_m, "E")
    assert len(fig.axes[0].lines) == TINY_QUAKE["n_stations"] and "E component" in fig.axes[0].get_title()
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), np.arange(answer.query.shape[-1]) / 100.0)


def test_a_dataset_item_reports_the_rank_its_true_match_has_in_the_index(backend, exported):
    emb, ids, modality = exported
    images = np.flatnonzero(np.asarray(modality) == "image")
    train = load_paired(backend.data_dir, "train")
    assert backend.indexed_split() == "train"  # the page offers the split the index was built from
    checked = 0
    for r in range(len(train)):
        gid = int(train[r]["geology_id"])
        for source in range(TINY_QUAKE["sources_per_geology"]):
            answer = backend.query_item("train", r, source, k=3)
            q = emb[ids.index(f"train/geology-{gid}/source-{source}")]
            np.testing.assert_allclose(answer.embedding, q, atol=1e-5)  # embedded as `seisbind export` does
            own = q @ emb[ids.index(f"train/geology-{gid}/image")]
            expected = 1 + int(np.sum(emb[images] @ q > own + 1e-6))
            assert answer.true_rank == expected, (r, source)
            assert f"ranks {expected} of {len(images)}" in answer.true_match
            checked += 1
    assert checked == len(train) * TINY_QUAKE["sources_per_geology"]
    with pytest.raises(ValueError, match="row 99 is not in the train split, which has rows 0..") as err:
        backend.query_item("train", 99)
    assert "\n" not in str(err.value)


def test_bad_files_give_the_one_line_messages_of_the_cli(setup, backend, tmp_path, capsys):
    w = load_paired(setup / "data", "train")[0]["waveforms"][0].numpy()
    nan = w.copy()
    nan[0, 0, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "junk.mseed").write_bytes(np.random.default_rng(0).bytes(4096))
    marker = tmp_path / "PWNED"
    (tmp_path / "stream.mseed").write_bytes(payload(marker))  # a pickle ObsPy's own guessing would run
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    write_mseed(w, tmp_path / "slow.mseed", rate=20.0)
    expected = {"nan.npy": "NaN or infinite samples", "junk.mseed": "ObsPy cannot read it as a waveform format",
                "stream.mseed": "ObsPy cannot read it as a waveform format", "objects.npy": "not a readable .npy array",
                "slow.mseed": "upsampled 5x to the model's 100 Hz"}  # fmt: skip
    for name, words in expected.items():
        with pytest.raises((InputError, ValueError)) as err:
            backend.query_file(tmp_path / name)
        message = str(err.value)
        assert words in message and "\n" not in message, message
        assert message == cli_error(capsys, setup / "image-index", setup / "model", "--waveform", tmp_path / name)
        with pytest.raises(ValueError) as renamed:  # an upload's temporary path is shown as the user's file name
            backend.query_file(tmp_path / name, name=f"my-{name}")
        assert str(renamed.value) == message.replace(str(tmp_path / name), f"my-{name}")
    assert not marker.exists()


def test_a_section_index_is_queried_with_a_png_of_the_models_size_or_refuses_it(setup, tmp_path, exported):
    from PIL import Image

    from seisbind.app.backend import AppBackend

    sections = AppBackend(setup / "model", setup / "waveform-index", data=setup / "data")
    assert sections.query_modality == "image" and sections.image_size == (64, 64)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "s.png")
    answer = sections.query_file(tmp_path / "s.png", k=3)
    assert len(answer.hits) == 3 and all(h["modality"] == "waveform" for h in answer.hits)
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    for name, words in [("small.png", "small.png: the model takes 64 x 64 sections (height x width), this one is 40 x 64"),
                        ("fake.png", "fake.png: not a readable PNG image")]:  # fmt: skip
        with pytest.raises(InputError, match=re.escape(words)):
            sections.query_file(tmp_path / name, name=name)
    with pytest.raises(ValueError, match="a waveform query searches images: give a image query"):
        sections.query_array("waveform", np.zeros((4, 3, 201), np.float32), "w")
    # a section item finds its own records: the best of its sources' ranks, as the embeddings rank them
    emb, ids, modality = exported
    waves = np.flatnonzero(np.asarray(modality) == "waveform")
    item = sections.query_item("train", 1)
    gid = int(load_paired(setup / "data", "train")[1]["geology_id"])
    q = emb[ids.index(f"train/geology-{gid}/image")]
    scores = emb[waves] @ q
    own = max(scores[[i for i, w in enumerate(waves) if ids[w].startswith(f"train/geology-{gid}/")]])
    assert item.true_rank == 1 + int(np.sum(scores > own + 1e-6))


def test_the_map_holds_both_modalities_and_places_the_query(setup, backend, tmp_path):
    from seisbind.app.figures import map_figure

    jmap = backend.joint_map("tsne")
    assert jmap is backend.joint_map("tsne")  # computed once
    train = len(load_paired(setup / "data", "train"))  # the index's sections, and the export's records besides
    assert len(jmap.table) == jmap.total == train * (1 + TINY_QUAKE["sources_per_geology"])
    assert {r["modality"] for r in jmap.table} == {"image", "waveform"} and jmap.xy.shape == (len(jmap.table), 2)
    assert jmap.label_columns()[:2] == ["family", "modality"] and "vs30" in jmap.label_columns()
    answer = backend.query_item("train", 0, 1, k=3)
    fig = map_figure(jmap, "family", answer)
    names = [t.name for t in fig.data]
    assert "query" in names and "top 3 hits" in names
    query_trace = fig.data[names.index("query")]
    assert len(fig.data[names.index("top 3 hits")].x) == 3
    # a dataset item of the export sits on its own point
    point = next(i for i, r in enumerate(jmap.table) if r.get("id", "").endswith("/source-1")
                 and r["geology_id"] == int(load_paired(setup / "data", "train")[0]["geology_id"]))  # fmt: skip
    np.testing.assert_allclose([query_trace.x[0], query_trace.y[0]], jmap.xy[point])
    assert any("family: " in text for trace in fig.data for text in (trace.text or []))  # hover shows metadata
    small = backend.joint_map("tsne", max_points=10)
    assert len(small.table) == 10 and small.total == jmap.total  # bounded, a seeded sample
    assert map_figure(jmap, "vs30").data[0].marker.colorbar.title.text == "vs30"
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(ImportError, match=re.escape("--map umap needs umap-learn (pip install umap-learn)")):
            backend.joint_map("umap")


def test_a_taken_port_is_one_line(setup, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main(["app", "--model", str(setup / "model"), "--index", str(setup / "image-index"), "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == f"seisbind app: error: port {port} on 127.0.0.1 is taken (Address already in use); choose another with --port"
    with pytest.raises(SystemExit):
        main(["app", "--model", "m", "--index", "i", "--port", "70000"])
    assert "argument --port: expected a port number from 1 to 65535, got '70000'" in capsys.readouterr().err


# --- the page, in a real browser -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture
def no_internet(monkeypatch):
    """Every connection the test process opens outside 127.0.0.1 is refused and recorded."""
    tried: list = []
    connect = socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOCAL_HOSTS:
            tried.append(address)
            raise OSError(f"test: no connection outside 127.0.0.1 ({address})")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    return tried


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas 3 deprecations inside Gradio
def test_the_page_in_a_headless_chromium(setup, backend, tmp_path, no_internet):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    from seisbind.app.page import build_page, serve

    row = load_paired(setup / "data", "train")[3]
    good = write_mseed(row["waveforms"][0].numpy(), tmp_path / "event.mseed")
    bad = tmp_path / "notes.mseed"
    bad.write_text("these are field notes, not a waveform\n")
    port = free_port()
    page_app = serve(build_page(backend), port, block=False)
    outside: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox"] if os.geteuid() == 0 else [])  # fmt: skip
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def route(r):
                host = r.request.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
                if r.request.url.startswith(("http://", "https://", "ws://", "wss://")) and host not in LOCAL_HOSTS:
                    outside.append(r.request.url)
                    return r.abort()
                return r.continue_()

            context.route("**/*", route)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            def upload(path):  # as a user does: clear the last file (x), then drop the next one
                clear = page.locator("#seisbind-upload button[aria-label='Clear']")
                if clear.count():
                    clear.click()
                page.locator("#seisbind-upload input[type=file]").set_input_files(str(path))

            hits = page.locator("#seisbind-hits")
            images = page.locator("#seisbind-hit-images img")

            def expect_answers(timeout=30_000):
                sync_api.expect(hits).to_contain_text("train/geology-", timeout=timeout)
                sync_api.expect(hits).to_contain_text("score")
                page.wait_for_function("n => document.querySelectorAll('#seisbind-hit-images img').length >= n",
                                       arg=backend.k, timeout=timeout)  # fmt: skip
                sync_api.expect(page.locator("#seisbind-query img, #seisbind-query canvas").first).to_be_visible()

            upload(good)
            expect_answers()
            assert images.count() >= backend.k
            sync_api.expect(page.locator("#seisbind-error")).to_be_hidden()

            upload(bad)
            error = page.locator("#seisbind-error textarea")
            sync_api.expect(error).to_have_value(
                "notes.mseed: ObsPy cannot read it as a waveform format seisbind accepts (MSEED, SAC, GSE2, SEISAN, "
                "SACXY, Q, SH_ASC, SEGY, SU, SEG2, AH, KNET); give the format if it is one of them (e.g. a "
                "compressed file)", timeout=30_000)  # fmt: skip
            sync_api.expect(hits).not_to_contain_text("train/geology-")  # the last answer is not left standing

            upload(good)  # the server still serves
            expect_answers()
            sync_api.expect(page.locator("#seisbind-error")).to_be_hidden()

            page.get_by_role("tab", name="a dataset item").click()
            page.locator("#seisbind-item-search").click()
            sync_api.expect(page.locator("#seisbind-rank")).to_contain_text("its own section (geology", timeout=30_000)
            sync_api.expect(page.locator("#seisbind-map .js-plotly-plot").first).to_be_visible()
            page.get_by_role("tab", name="text").click()
            sync_api.expect(page.locator("#seisbind-text textarea")).to_be_disabled()
            page.get_by_role("tab", name="a dataset item").click()
            shot = os.environ.get("SEISBIND_SCREENSHOT")
            if shot:
                time.sleep(1.0)  # the map's and gallery's last paint
                page.screenshot(path=shot, full_page=True)
            browser.close()
    finally:
        page_app.close()
    assert outside == [] and no_internet == []


def test_text_queries_search_sections_with_a_text_model_and_are_refused_without(setup, backend):
    """A model with a text tower answers a sentence with the sections nearest it in the joint
    space (the same order as `index query --text`); the tiny model without one says so."""
    from seisbind.app.backend import AppBackend
    from seisbind.app.figures import query_figure
    from seisbind.search.index_cli import query

    with pytest.raises(ValueError, match="has no text tower"):
        backend.query_text("faulted layers")
    torch.manual_seed(0)
    create_model("tiny-text").save_pretrained(setup / "text-model")
    assert main(["export", "--model", str(setup / "text-model"), "--data", str(setup / "data"), "--split", "train",
                 "--out", str(setup / "text.parquet"), "--no-progress"]) == 0  # fmt: skip
    assert main(["index", "build", "--embeddings", str(setup / "text.parquet"), "--out", str(setup / "text-index")]) == 0
    app = AppBackend(setup / "text-model", setup / "text-index", data=setup / "data")
    sentence = "layers cut by a reverse fault, site class D"
    answer = app.query_text(sentence, k=4)
    _, scores, hits, _ = query(str(setup / "text-index"), str(setup / "text-model"), text=sentence, k=4)
    assert [h["id"] for h in answer.hits] == [h["id"] for h in hits] and np.allclose(answer.scores, scores, atol=1e-6)
    assert answer.modality == "text" and all(h["modality"] == "image" for h in answer.hits)
    assert len(app.tiles(answer)) == 4 and query_figure(answer, app.sampling_rate, app.station_spacing_m) is not None
    with pytest.raises(ValueError, match="type a sentence first"):
        app.query_text("  ")


def test_without_the_app_extra_the_command_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--model", "m", "--index", "i"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'seisbind app: error: the app needs gradio: pip install "seisbind[app]" (or -e ".[cpu,app]" in a clone)'
