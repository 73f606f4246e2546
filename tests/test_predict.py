"""`predict` on fixture posters: 19 probabilities each, bad input reported per poster."""

import csv
import functools
import http.server
import subprocess
import sys
import threading

import numpy as np
import pytest

from postergenre.cli import main
from postergenre.genres import GENRES
from postergenre.serving.predict import expand_posters, load_predictor, predict_posters
from tests.conftest import REPO_ROOT, TINY_IMAGE
from tests.helpers import png_text_bomb, radiance_hdr, train_tiny


@pytest.fixture(scope="module")
def model_dir(tiny_prepared, tmp_path_factory):
    return train_tiny(tiny_prepared, tmp_path_factory.mktemp("predict") / "model")


@pytest.fixture
def posters(tiny_data, tmp_path):
    folder = tmp_path / "posters"
    folder.mkdir()
    for source in sorted((tiny_data / "posters").iterdir())[:3]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.jpg").write_text("not an image")
    return folder


@pytest.fixture
def http_root(posters):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(posters))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_folder_url_and_bad_input(model_dir, posters, http_root, tmp_path):
    predictor = load_predictor(model_dir)
    first = sorted(posters.glob("tt*.jpg"))[0]
    items = expand_posters([str(posters), f"{http_root}/{first.name}",
                            f"{http_root}/missing.jpg", str(tmp_path / "nowhere.png")])
    results = predict_posters(predictor, items, batch_size=2, explain_dir=tmp_path / "cam")
    assert len(results) == 7
    by_name = {r.poster: r for r in results}
    for r in results:
        if r.error is None:
            assert r.probabilities.shape == (19,)
            assert ((r.probabilities >= 0) & (r.probabilities <= 1)).all()
    assert "not a decodable image" in by_name[str(posters / "broken.jpg")].error
    assert "cannot download" in by_name[f"{http_root}/missing.jpg"].error
    assert "cannot read" in by_name[str(tmp_path / "nowhere.png")].error
    # The URL and the file are the same poster: the same probabilities.
    url = by_name[f"{http_root}/{first.name}"].probabilities
    assert url == pytest.approx(by_name[str(first)].probabilities)
    assert len(list((tmp_path / "cam").glob("*.gradcam.png"))) == 4


@pytest.mark.slow
def test_cli_writes_csv_and_exits_nonzero_on_a_bad_poster(model_dir, posters, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(posters), "--model", str(model_dir), "--csv", str(out),
                 "--format", "table"])
    assert code == 1  # one poster failed; the others are still scored and written
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert [r["error"] != "" for r in rows].count(True) == 1
    good = [r for r in rows if not r["error"]]
    assert all(len([r[g] for g in GENRES if r[g] != ""]) == 19 for r in good)
    printed = capsys.readouterr()
    (line,) = [x for x in printed.out.splitlines() if "broken.jpg" in x]
    assert "ERROR" in line and "not a decodable image" in line
    # A bare model folder has no thresholds: said in the table and in the log.
    assert "thresholds  none: 0.5 for every genre" in printed.out


def test_predict_loads_tensorflow_and_nothing_for_other_stages(model_dir, posters):
    """One poster from the CLI costs the interpreter, TensorFlow and the model (issue 27):
    not great-expectations (validate's), nor tfx-bsl and Apache Beam (batch-predict's)."""
    probe = ("import sys; from postergenre.cli import main; code = main(sys.argv[1:]); "
             "print(code, *[m for m in ('tensorflow', 'great_expectations', 'tfx_bsl', "
             "'apache_beam') if m in sys.modules])")
    first = sorted(posters.glob("tt*.jpg"))[0]
    done = subprocess.run([sys.executable, "-c", probe, "predict", str(first), "--model",
                           str(model_dir), "--format", "csv"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 tensorflow"


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no registry at {tmp_path / 'nothing'}: "):
        load_predictor(registry=tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no blessed model yet"):
        load_predictor(registry=tmp_path / "empty")


def test_gradcam_on_a_nested_vgg16_model_whose_base_reuses_the_input_name():
    import numpy as np

    from postergenre.serving.gradcam import gradcam
    from postergenre.training.bases import build_transfer_base
    from postergenre.training.models import build_dense_head, join_base_and_head

    base = build_transfer_base("vgg16", 32, "none")
    model = join_base_and_head(base, build_dense_head(base.output_shape[1:], 8))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    heat = gradcam(model, images, np.array([0, 5]))
    assert heat.shape == (2, 32, 32) and heat.min() >= 0 and heat.max() <= 1


# -- issue 13: pixel bombs refused before decoding; RGBA posters accepted ----------------


def _png(width: int, height: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG whose header claims width x height; `rows` is the (raw) image data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _pixel_bomb() -> bytes:
    """A small PNG declaring 20000 x 20000 grey pixels (1.2 GB once decoded to colour);
    its data holds the first 2000 rows only, but a decoder allocates for all of them."""
    return _png(20000, 20000, 0, bytes(20001 * 2000))


def _rgba_poster() -> bytes:
    import cv2
    import numpy as np

    rgba = np.random.default_rng(0).integers(0, 256, (72, 48, 4), dtype=np.uint8)
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


class _FakeModel:
    """Stands in for a Keras model: 32-pixel input, 0.6 for every genre."""

    input_shape = (None, 32, 32, 3)

    def predict_on_batch(self, pixels):
        import numpy as np

        assert pixels.shape[1:] == (32, 32, 3)
        return np.full((len(pixels), len(GENRES)), 0.6)


def test_a_pixel_bomb_is_refused_before_decoding_and_the_others_are_scored(
        tiny_data, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_pixel_bomb())
    assert bomb.stat().st_size < 1_000_000
    rgba = tmp_path / "rgba.png"
    rgba.write_bytes(_rgba_poster())
    good = sorted((tiny_data / "posters").iterdir())[0]
    by_name, seen = _score([good, bomb, rgba], monkeypatch)
    assert by_name[str(bomb)].error == (
        f"{bomb}: 20000x20000 pixels exceeds 40000000; refused before decoding")
    assert _pixel_bomb()[:64] not in seen  # OpenCV never saw it
    for ok in (good, rgba):  # the RGBA poster is a poster: its alpha is dropped
        assert by_name[str(ok)].error is None
        assert by_name[str(ok)].genres == list(GENRES)


# -- issue 15: predict speaks JSON, names its model, warns of demo data, explains ---------


DATA_VERSION = "0123456789abcdef0123456789abcdef.dir"


def _dvc_project(tiny_data, root):
    """A project folder whose data.dvc tracks a copy of `tiny_data` (the demo's posters)."""
    import shutil

    import yaml

    shutil.copytree(tiny_data, root / "data")
    (root / "data.dvc").write_text(yaml.safe_dump(
        {"outs": [{"md5": DATA_VERSION, "path": "data", "hash": "md5"}]}))
    return root / "data.dvc"


def test_data_source_tells_the_demo_from_real_posters(tiny_data, tmp_path):
    from postergenre.data.labels import read_labels, write_table
    from postergenre.serving.registry import data_source_of

    dvc = _dvc_project(tiny_data, tmp_path)
    assert data_source_of(dvc, DATA_VERSION) == "demo"
    # Another data version than the one data.dvc records: nothing can be said of it.
    assert data_source_of(dvc, "ffff.dir") is None
    assert data_source_of(tmp_path / "none.dvc", DATA_VERSION) is None
    # One real movie among the demo's posters: not the demo any more. A real movie that
    # bears a demo-like title keeps its own id, so it is not taken for a demo poster.
    table = read_labels(tmp_path / "data")
    table.loc[0, "imdb_id"] = "tt0111161"
    write_table(table, tmp_path / "data" / "labels.csv")
    assert data_source_of(dvc, DATA_VERSION) == "real"


@pytest.fixture(scope="module")
def demo_registry(model_dir, tiny_data, tmp_path_factory):
    """A registry whose latest entry is `model_dir`, blessed with per-genre thresholds,
    trained on the demo's data (as `postergenre register` records it from data.dvc)."""
    import json

    from postergenre.evaluation.gate import BLESSED
    from postergenre.serving.registry import data_source_of, register

    root = tmp_path_factory.mktemp("demo-registry")
    thresholds = {"global": 0.5, "per_genre": {g: round(0.1 + 0.04 * i, 2)
                                               for i, g in enumerate(GENRES)}}
    (root / "blessing.json").write_text(json.dumps(
        {"decision": BLESSED, "model": "scratch", "thresholds": thresholds, "metrics": {}}))
    source = data_source_of(_dvc_project(tiny_data, root), DATA_VERSION)
    entry = register(root / "blessing.json", {"scratch": model_dir}, root / "registry",
                     DATA_VERSION, source)
    return root / "registry", entry


def _probabilities(csv_text):
    """{poster: (row, 19 probabilities)} from predict's CSV."""
    import numpy as np

    rows = list(csv.DictReader(csv_text.splitlines()))
    return {r["poster"]: (r, np.array([float(r[g]) for g in GENRES]) if not r["error"]
                          else None) for r in rows}


@pytest.mark.slow
def test_json_names_the_model_ranks_genres_and_warns_of_demo_data(
        demo_registry, posters, tmp_path, capsys):
    import json

    from postergenre.serving.registry import file_sha256, read_thresholds

    registry, entry = demo_registry
    table = tmp_path / "all.csv"
    # Piped (capsys is no terminal): JSON without asking for it.
    code = main(["predict", str(posters), "--registry", str(registry), "--top-k", "4",
                 "--csv", str(table)])
    printed = capsys.readouterr()
    assert code == 1  # broken.jpg
    document = json.loads(printed.out)
    model = document["model"]
    assert model["name"] == "scratch" and model["entry"] == entry.name
    assert model["path"] == str(entry)
    assert model["data_version"] == DATA_VERSION and model["data_source"] == "demo"
    assert model["thresholds"] == {"path": str(entry / "thresholds.json"),
                                   "sha256": file_sha256(entry / "thresholds.json")}
    assert model["registered_at"]
    (warning,) = document["warnings"]
    assert "demo data" in warning and entry.name in warning
    assert warning in printed.err  # the person at the terminal sees it too
    assert document["top_k"] == 4 and (document["scored"], document["failed"]) == (3, 1)

    cut = read_thresholds(entry)["per_genre"]
    everything = _probabilities(table.read_text())
    assert [p["poster"] for p in document["posters"]] == list(everything)
    for record in document["posters"]:
        row, probabilities = everything[record["poster"]]
        if record["poster"].endswith("broken.jpg"):
            assert "broken.jpg" in record["error"] and "genres" not in record
            continue
        assert record["error"] is None and record["explanation"] is None
        # Genres: exactly those at or above their served threshold, most probable first.
        expected = {g for g, p in zip(GENRES, probabilities, strict=True) if p >= cut[g]}
        assert {g["genre"] for g in record["genres"]} == expected
        assert all(g["threshold"] == pytest.approx(cut[g["genre"]]) for g in record["genres"])
        listed = [g["probability"] for g in record["genres"]]
        assert listed == sorted(listed, reverse=True)
        # Top-k: the k highest of the 19 probabilities, in order.
        ranked = sorted(zip(probabilities, GENRES, strict=True), key=lambda t: -t[0])[:4]
        assert [t["genre"] for t in record["top_k"]] == [g for _, g in ranked]
        assert [t["probability"] for t in record["top_k"]] == pytest.approx(
            [p for p, _ in ranked], abs=1e-4)
        assert row["top_k"].split("|")[0].split(":")[0] == ranked[0][1]


def _predict_in_a_process(*args: str) -> str:
    """`postergenre predict ...` as a user runs it, in its own process (nothing an earlier
    test left running in this one can write into its output); its stdout."""
    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "predict", *args],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # broken.jpg
    assert "1 of 4 posters could not be scored" in done.stderr, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_table_and_csv_formats(demo_registry, posters):
    registry, entry = demo_registry
    out = _predict_in_a_process(str(posters), "--registry", str(registry),
                                "--format", "table", "--top-k", "2")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["model", "scratch"] and entry.name in lines[0]
    assert lines[1] == f"trained on  {DATA_VERSION} (demo data)"
    assert lines[2] == f"thresholds  {entry / 'thresholds.json'}"
    header = lines[4]
    assert header.split()[:3] == ["poster", "top", "2"]
    assert header.rstrip().endswith("genres (at or above threshold)")
    rows = {line.split()[0]: line for line in lines[5:] if line.strip()}
    assert len(rows) == len(lines[5:]) == 4, out  # one line per poster, nothing else
    for poster, line in rows.items():
        if poster.endswith("broken.jpg"):
            assert "ERROR" in line and "not a decodable image" in line
            continue
        # The columns start where the header says: two ranked genres, then the genres.
        top = line[header.index("top 2"):header.index("genres (")].strip()
        assert len(top.split(", ")) == 2
        ranked = [float(pair.rsplit(" ", 1)[1]) for pair in top.split(", ")]
        assert ranked == sorted(ranked, reverse=True)
        assert line[header.index("genres ("):].strip()

    parsed = _probabilities(_predict_in_a_process(str(posters), "--registry", str(registry),
                                                  "--format", "csv", "--top-k", "3"))
    assert len(parsed) == 4
    for row, probabilities in parsed.values():
        assert list(row)[:4] == ["poster", "error", "genres", "top_k"]
        if probabilities is None:
            assert row["error"] and row["genres"] == row["top_k"] == ""
            continue
        top = [(t.split(":")[0], float(t.split(":")[1])) for t in row["top_k"].split("|")]
        assert len(top) == 3
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
        assert top[0][1] == pytest.approx(probabilities.max(), abs=1e-4)


@pytest.mark.slow
def test_bad_files_get_one_line_each_and_the_others_are_scored(
        demo_registry, posters, tmp_path, capsys):
    import json

    registry, _ = demo_registry
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_pixel_bomb())
    missing = tmp_path / "missing.jpg"
    good = sorted(posters.glob("tt*.jpg"))
    code = main(["predict", str(good[0]), str(missing), str(posters / "broken.jpg"),
                 str(bomb), str(good[1]), "--registry", str(registry), "--format", "json"])
    printed = capsys.readouterr()
    assert code == 1
    records = {r["poster"]: r for r in json.loads(printed.out)["posters"]}
    assert [records[str(g)]["error"] for g in good[:2]] == [None, None]
    assert len(records[str(good[0])]["top_k"]) == 3
    for bad, words in ((missing, "cannot read"), (posters / "broken.jpg", "not a decodable"),
                       (bomb, "20000x20000 pixels exceeds")):
        assert records[str(bad)]["error"].startswith(f"{bad}: {words}")
        # One line on stderr names the file and says what is wrong with it.
        assert len([x for x in printed.err.splitlines() if f"{bad}: {words}" in x]) == 1
    assert "3 of 5 posters could not be scored" in printed.err


@pytest.mark.slow
def test_explain_overlays_keep_the_posters_shape_and_carry_a_caption(
        demo_registry, posters, tmp_path):
    import cv2
    import numpy as np

    from postergenre.serving.gradcam import OVERLAY_HEIGHT, caption_band

    registry, _ = demo_registry
    tall = sorted(posters.glob("tt*.jpg"))[0]  # the demo's 48x72 posters
    wide = tmp_path / "wide.png"  # a landscape artwork, 150x60
    cv2.imwrite(str(wide), cv2.resize(cv2.imread(str(tall)), (150, 60)))
    predictor = load_predictor(registry=registry)
    results = predict_posters(predictor, [str(tall), str(wide)],
                              explain_dir=tmp_path / "cam")
    for result, (width, height) in zip(results, ((48, 72), (150, 60)), strict=True):
        image = cv2.cvtColor(cv2.imread(result.explanation), cv2.COLOR_BGR2RGB)
        # The poster part is OVERLAY_HEIGHT tall and as wide as the poster's shape says:
        # not squashed into the model's square.
        assert image.shape[1] == round(width * OVERLAY_HEIGHT / height)
        assert image.shape[0] > OVERLAY_HEIGHT
        band = image[OVERLAY_HEIGHT:]
        # The caption: the top genre and its probability, in dark letters on white.
        top = int(np.argmax(result.probabilities))
        caption = f"{GENRES[top]} {result.probabilities[top]:.2f}"
        assert (band.min(axis=2) < 100).sum() > 30
        assert np.array_equal(band, caption_band(caption, image.shape[1], band.shape[0]))
        assert not np.array_equal(band, caption_band("Western 0.01", image.shape[1],
                                                     band.shape[0]))
        # The poster part is the poster (under the heat map), not the caption's white.
        assert image[:OVERLAY_HEIGHT].mean() < 250


def test_top_k_and_records_without_a_model():
    import numpy as np

    from postergenre.serving.predict import PosterResult
    from postergenre.serving.predict_output import poster_record, top_k

    p = np.linspace(0.01, 0.19, 19)[::-1].copy()
    p[5] = p[0]  # a tie with the first genre: vocabulary order decides
    assert [g for g, _ in top_k(p, 3)] == [GENRES[0], GENRES[5], GENRES[1]]
    thresholds = np.full(19, 0.18)
    result = PosterResult("a.jpg", p, [g for g, q in zip(GENRES, p, strict=True) if q >= 0.18])
    record = poster_record(result, thresholds, 2)
    assert [g["genre"] for g in record["genres"]] == [GENRES[0], GENRES[5], GENRES[1]]
    assert [g["genre"] for g in record["top_k"]] == [GENRES[0], GENRES[5]]
    assert poster_record(PosterResult("b.jpg", error="b.jpg: cannot read"), thresholds, 2) \
        == {"poster": "b.jpg", "error": "b.jpg: cannot read"}


# -- issue 24: one guard before every decode; one bad poster is one error line ----------


def _wide_bmp(width: int = 2_000_000) -> bytes:
    """A 2,000,000 x 1 BMP (6 MB, 2 Mpx): past OpenCV's own side limit, whose check is an
    assertion (cv2.error), not a None."""
    import struct

    row = (width * 3 + 3) & ~3
    info = struct.pack("<IiiHHIIiiII", 40, width, 1, 1, 24, 0, row, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + row, 0, 0, 54) + info + bytes(row)


def _score(posters, monkeypatch):
    """predict_posters on a fake model; also which encoded buffers OpenCV was given."""
    import cv2
    import numpy as np

    from postergenre.serving.predict import Predictor

    seen = []
    decode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buffer, flags: seen.append(
        bytes(buffer[:64])) or decode(buffer, flags))
    results = predict_posters(Predictor(_FakeModel(), np.full(19, 0.5), "fake"),
                              [str(p) for p in posters])
    return {r.poster: r for r in results}, seen


def test_predict_draws_its_bar_on_a_terminal_only(tiny_data, monkeypatch, capsys):
    """Piped, the scores are the output: nothing else goes out, no bar, no lines."""
    import fcntl
    import io
    import os
    import select
    import struct
    import termios

    posters = sorted((tiny_data / "posters").iterdir())[:3]
    _score(posters, monkeypatch)
    assert capsys.readouterr().err == ""
    master, slave = os.openpty()  # a terminal of 24 x 80 (tqdm reads stderr's width)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    terminal = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), write_through=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        _score(posters, monkeypatch)
        drawn = os.read(master, 65536) if select.select([master], [], [], 0)[0] else b""
    finally:
        terminal.close()
        os.close(master)
    assert b"predict" in drawn


def test_headers_that_cannot_be_read_and_other_formats_are_refused_naming_the_file(
        tiny_data, tmp_path, monkeypatch):
    good = sorted((tiny_data / "posters").iterdir())[0]
    bomb, hdr = tmp_path / "text-bomb.png", tmp_path / "poster.hdr"
    bomb.write_bytes(png_text_bomb())
    hdr.write_bytes(radiance_hdr())
    by_name, seen = _score([good, bomb, hdr], monkeypatch)
    assert by_name[str(bomb)].error == (
        f"{bomb}: 20000x20000 pixels exceeds 40000000; refused before decoding")
    assert by_name[str(hdr)].error == (
        f"{hdr}: not a decodable image (not a JPEG, PNG, WebP or BMP file)")
    assert by_name[str(good)].error is None and by_name[str(good)].genres == list(GENRES)
    assert seen == [good.read_bytes()[:64]]  # OpenCV saw the good poster only


def test_one_cap_for_files_and_opencvs_own_errors_are_one_bad_poster(
        tiny_data, tmp_path, monkeypatch):
    good = sorted((tiny_data / "posters").iterdir())[:2]
    huge, wide = tmp_path / "huge.jpg", tmp_path / "wide.bmp"
    with open(huge, "wb") as handle:  # sparse: no disk, and it must not be read
        handle.write(good[0].read_bytes())
        handle.truncate(50_000_000)
    wide.write_bytes(_wide_bmp())
    by_name, _ = _score([good[0], huge, wide, good[1]], monkeypatch)
    assert by_name[str(huge)].error == f"{huge}: larger than 20000000 bytes"
    assert by_name[str(wide)].error.startswith(f"{wide}: not a decodable image (OpenCV: ")
    assert "CV_IO_MAX_IMAGE_WIDTH" in by_name[str(wide)].error
    assert [by_name[str(g)].error for g in good] == [None, None]


def test_a_tiny_poster_warns_and_a_fifo_is_refused_not_waited_on(
        tiny_data, tmp_path, monkeypatch, caplog):
    import os
    import threading

    import cv2
    import numpy as np

    tiny, fifo = tmp_path / "tiny.png", tmp_path / "fifo.jpg"
    assert cv2.imwrite(str(tiny), np.full((1, 1, 3), 200, np.uint8))
    os.mkfifo(fifo)
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(_score([tiny, fifo], monkeypatch)[0]),
                              daemon=True)
    worker.start()
    worker.join(120)  # a bound for a failure only: refusing the FIFO takes no time
    if worker.is_alive():  # blocked on the FIFO: let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("predict waited on a FIFO")
    assert done[str(fifo)].error == f"{fifo}: not a regular file"
    assert done[str(tiny)].error is None and done[str(tiny)].genres == list(GENRES)
    assert done[str(tiny)].warning == (f"{tiny}: 1x1 pixels, smaller than 32 on a side: "
                                       "scored, but its genres mean little")
    assert done[str(tiny)].warning in caplog.text


# ---- what is served is what evaluate scored ------------------------------------------------

SHARED_DEV_POSTERS = REPO_ROOT.parent / "shared" / "data" / "dev-posters"


@pytest.fixture(scope="module")
def large_posters(tmp_path_factory):
    """Demo posters large enough for the JPEG decoder's reduced scales (1/8 at 32 px)."""
    from postergenre.configs import DemoSourceConfig
    from postergenre.sources.demo import generate_demo

    out = tmp_path_factory.mktemp("large") / "data"
    generate_demo(out, DemoSourceConfig(n_posters=60, seed=5, width=300, height=450))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("source", ["generated", "dev-posters"])
def test_predict_gives_each_poster_what_evaluate_scored_for_it(source, model_dir,
                                                               large_posters, tmp_path):
    """predict on the original files against evaluate's scores of the same movies from
    the shards: the same probabilities (within 1e-6: only the batch composition differs)
    and the same genre set, on generated and (where ../shared is here) real posters."""
    from postergenre.configs import AugmentConfig, SplitConfig, ValidateConfig
    from postergenre.data.augment import augment_and_shard
    from postergenre.data.labels import read_labels
    from postergenre.data.shards import labels_of
    from postergenre.data.split import split_dataset
    from postergenre.evaluation.evaluate import predict_split
    from postergenre.validation.validate import validate_dataset

    data = large_posters if source == "generated" else SHARED_DEV_POSTERS
    if not data.is_dir():
        pytest.skip(f"{data} is absent (real posters live outside the project)")
    validate_dataset(data, tmp_path / "validated", ValidateConfig(min_genre_support=0))
    split_dataset(tmp_path / "validated" / "labels.csv", tmp_path / "split",
                  SplitConfig(seed=42))
    augment_and_shard(data, tmp_path / "split", tmp_path / "prepared",
                      AugmentConfig(image_size=TINY_IMAGE, jpeg_quality=90))
    predictor = load_predictor(model_dir)
    assert predictor.poster == (TINY_IMAGE, 95)  # the model's own, not these shards'
    predictor.poster = (TINY_IMAGE, 90)  # as a model trained on these shards records
    for split in ("validation", "test"):
        scored = predict_split(predictor.model, tmp_path / "prepared", split)
        _, ids = labels_of(tmp_path / "prepared", split)
        files = read_labels(tmp_path / "split" / f"{split}.csv").set_index("imdb_id")["poster"]
        served = predict_posters(predictor, [str(data / files[i]) for i in ids])
        assert len(ids) > 5 and all(r.error is None for r in served)
        np.testing.assert_allclose([r.probabilities for r in served], scored, atol=1e-6)
        for result, scores in zip(served, scored, strict=True):
            expected = [g for g, s, t in zip(GENRES, scores, predictor.thresholds,
                                             strict=True) if s >= t]
            assert result.genres == expected, result.poster
