"""augment's worker processes (render.py): the same shards as rendering in this process,
no TensorFlow in a worker, a bad poster named from inside a worker, a caller's script
without a main guard, and as many workers as the CPUs (and a pod's CPU limit) allow."""

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from postergenre.configs import AugmentConfig
from postergenre.data.augment import augment_and_shard
from postergenre.data.images import PosterDecodeError, _cgroup_cpu_limit, available_cpus
from postergenre.data.labels import read_labels
from postergenre.data.render import (
    PosterJob,
    RenderPool,
    RenderSettings,
    render_batch,
    render_poster,
)
from tests.conftest import TINY_IMAGE

CONFIG = AugmentConfig(image_size=TINY_IMAGE)


def _example(framed: bytes) -> tf.train.Example:
    """The Example inside one TFRecord frame (length, its CRC, the record, its CRC)."""
    length = int.from_bytes(framed[:8], "little")
    assert len(framed) == 8 + 4 + length + 4
    return tf.train.Example.FromString(framed[12:12 + length])


def _progress_line(line: str) -> bool:
    """One of augment's progress lines when piped (postergenre.progress)."""
    return re.fullmatch(r"augment \w+: \d+/\d+ posters \(\d+%, \d+\.\d s\)", line) is not None


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_pool_renders_what_this_process_renders(tiny_data, tiny_split, tiny_prepared):
    settings = RenderSettings(TINY_IMAGE, tuple(CONFIG.transforms), CONFIG.crop_min_scale,
                              CONFIG.jitter, CONFIG.seed, CONFIG.jpeg_quality)
    table = read_labels(tiny_split / "train.csv")
    labels = np.eye(19, dtype=np.uint8)[:len(table) % 19 + 1].max(axis=0)
    jobs = [PosterJob(str(tiny_data / poster), movie, "train", labels.tobytes(), copies)
            for poster, movie, copies in zip(table["poster"][:6], table["imdb_id"][:6],
                                             [0, 1, 2, 0, 3, 1], strict=True)]
    here = render_batch(jobs, settings)
    with RenderPool(2) as pool:
        there = pool.submit(jobs, settings).result()
        # A worker holds OpenCV and NumPy, not TensorFlow (seconds and a gigabyte to start).
        assert pool._executor.submit(eval, "'tensorflow' in __import__('sys').modules"
                                     ).result() is False
        # A terminal's Ctrl-C reaches the whole process group: a worker leaves it to its
        # owner (which ends the pool) instead of printing a KeyboardInterrupt of its own.
        assert pool._executor.submit(signal.getsignal, signal.SIGINT).result() == \
            signal.SIG_IGN
    assert there == here
    assert [len(records) for records in here] == [1, 2, 3, 1, 4, 2]
    # Each poster's first record is the poster itself, then its copies, each its own.
    for job, records in zip(jobs, here, strict=True):
        parsed = [_example(r).features.feature for r in records]
        assert [f["imdb_id"].bytes_list.value[0].decode() for f in parsed] == \
            [job.imdb_id] * len(records)
        names = [f["augmentation"].bytes_list.value[0].decode() for f in parsed]
        assert names[0] == "none" and "none" not in names[1:]
        assert list(parsed[0]["labels"].int64_list.value) == labels.tolist()
        assert len(set(records)) == len(records)


def test_a_bad_poster_is_named_from_inside_the_worker(tiny_data, tiny_split, tmp_path):
    data = tmp_path / "data"
    data.symlink_to(tiny_data, target_is_directory=True)
    table = read_labels(tiny_split / "validation.csv")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "posters").mkdir()
    for name in ("labels.csv",):
        (broken / name).write_bytes((tiny_data / name).read_bytes())
    for poster in (tiny_data / "posters").iterdir():
        (broken / "posters" / poster.name).symlink_to(poster)
    bad = broken / table["poster"].iloc[0]
    bad.unlink()
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(PosterDecodeError, match=f"{bad}: not a decodable image"):
        augment_and_shard(broken, tiny_split, tmp_path / "out", CONFIG)


UNGUARDED = """
import sys
from postergenre.data.augment import augment_and_shard
from postergenre.configs import AugmentConfig
augment_and_shard(sys.argv[1], sys.argv[2], sys.argv[3],
                  AugmentConfig(image_size={size}, shard_size=64))
print("done")
"""


def test_a_script_without_a_main_guard_works(tiny_data, tiny_split, tiny_prepared, tmp_path):
    """Spawned and fork-server workers re-run the parent's main script unless told not to:
    this one would start augment again in each worker."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(size=TINY_IMAGE))
    done = subprocess.run([sys.executable, str(script), str(tiny_data), str(tiny_split),
                           str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["done"]
    assert _digests(tmp_path / "out") == _digests(tiny_prepared)


def _alive_after(processes: list, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in processes if p.is_alive()]


def test_workers_start_with_the_pool_and_end_after_it(tiny_data, tiny_split):
    settings = RenderSettings(TINY_IMAGE, ("hflip",), 0.8, 0.1, 0, 90)
    table = read_labels(tiny_split / "train.csv")
    job = PosterJob(str(tiny_data / table["poster"].iloc[0]), table["imdb_id"].iloc[0],
                    "train", bytes(19), 0)
    with RenderPool(2) as pool:
        # Both workers exist before any task: they come up while the caller reads tables.
        workers = list(pool._executor._processes.values())
        assert len(workers) == 2
        assert len(pool.submit([job], settings).result()) == 1
    # A finished pool is not waited for, but its workers end on their own.
    assert _alive_after(workers, 30) == []

    # An error inside the pool: the workers are waited for before it propagates.
    with pytest.raises(RuntimeError, match="stop"), RenderPool(2) as pool:
        workers = list(pool._executor._processes.values())
        pool.submit([job] * 8, settings)
        raise RuntimeError("stop")
    assert _alive_after(workers, 0) == []


def test_render_poster_matches_the_pool_for_copies(tiny_data, tiny_split):
    settings = RenderSettings(TINY_IMAGE, ("hflip", "crop", "jitter"), 0.8, 0.1, 7, 90)
    table = read_labels(tiny_split / "train.csv")
    job = PosterJob(str(tiny_data / table["poster"].iloc[0]), table["imdb_id"].iloc[0],
                    "train", bytes(19), 5)
    first, second = render_poster(job, settings), render_poster(job, settings)
    assert first == second and len(first) == 6  # seeded by (seed, movie, copy): repeatable


@pytest.mark.parametrize(("text", "cpus"), [("200000 100000\n", 2), ("150000 100000", 2),
                                            ("50000 100000", 1), ("max 100000", None),
                                            ("garbage", None), ("100000 0", None)])
def test_a_cgroup_v2_cpu_quota_is_read_as_cpus(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text)
    assert _cgroup_cpu_limit(str(tmp_path)) == cpus


@pytest.mark.parametrize("folder", ["cpu,cpuacct", "cpu"])
@pytest.mark.parametrize(("quota", "cpus"), [("400000", 4), ("250000", 3), ("-1", None)])
def test_a_cgroup_v1_cpu_quota_is_read_as_cpus(tmp_path, folder, quota, cpus):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / folder / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_limit(str(tmp_path)) == cpus


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert _cgroup_cpu_limit(str(tmp_path)) is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
def test_available_cpus_never_exceed_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


# -- issue 24: augment's output is swapped in whole; its workers die with it ------------------


def _tree_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _descendants(pid: int) -> dict[int, int]:
    """{pid: generation} of every living (not zombie) descendant of `pid`, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: dict[int, int] = {}
    frontier = [(pid, 0)]
    while frontier:
        parent, generation = frontier.pop()
        for child in (c for c, p in parents.items() if p == parent):
            found[child] = generation + 1
            frontier.append((child, generation + 1))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def long_split(tiny_split, tmp_path_factory) -> Path:
    """tiny_split with each table's rows 20 times over: an augment that runs for seconds."""
    folder = tmp_path_factory.mktemp("long") / "split"
    folder.mkdir()
    for table in tiny_split.glob("*.csv"):
        header, *rows = table.read_text().splitlines(keepends=True)
        (folder / table.name).write_text(header + "".join(rows * 20))
    return folder


def _prepared_copy(tiny_prepared: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    out = tmp_path / "prepared"
    out.mkdir()
    for path in tiny_prepared.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    return out, _tree_digests(out)


def _augment_with_workers_stopped(data: Path, split: Path, out: Path, cwd: Path):
    """`postergenre augment` in a child process, once its workers are up: the workers
    stopped (SIGSTOP), so the run cannot end before the test does its part. Returns the
    process and {worker pid: generation} of its descendants (the workers are the 2nd)."""
    proc = subprocess.Popen([sys.executable, "-m", "postergenre.cli", "augment", "--data",
                             str(data), "--split", str(split), "--out", str(out),
                             "--image-size", str(TINY_IMAGE), "--shard-size", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    while True:  # the workers come up with the pool, before the first poster
        family = _descendants(proc.pid)
        workers = [p for p, generation in family.items() if generation == 2]
        if len(workers) >= available_cpus() or proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    return proc, workers, family


def _still_alive(pids, bound: float = 60.0) -> list[int]:
    """Those of `pids` still alive once they all ended, or `bound` seconds passed (a bound
    for failures only: an ending process leaves /proc at once)."""
    deadline = time.monotonic() + bound
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _output_ends(proc: subprocess.Popen, bound: float = 120.0) -> tuple[bytes, bytes] | None:
    """The process's stdout and stderr once every holder of them closed them (EOF), or
    None if they are still open after `bound` seconds (a bound for failures only)."""
    got: dict = {}
    reader = threading.Thread(target=lambda: got.update(out=proc.stdout.read(),
                                                        err=proc.stderr.read()), daemon=True)
    reader.start()
    reader.join(bound)
    return None if reader.is_alive() else (got["out"], got["err"])


def test_a_killed_augment_leaves_the_old_output_and_no_process_behind(
        tiny_data, long_split, tiny_prepared, tmp_path):
    out, before = _prepared_copy(tiny_prepared, tmp_path)
    proc, workers, family = _augment_with_workers_stopped(tiny_data, long_split, out, tmp_path)
    try:
        proc.kill()
        proc.wait(30)
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        ended = _output_ends(proc)
        left = _still_alive(family)
    finally:
        for pid in family:  # whatever the code under test left: ended here, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert ended is not None, "the workers kept the killed augment's output open"
    assert left == []
    assert _tree_digests(out) == before  # the old manifest beside its own shards


def test_a_killed_worker_is_one_line_and_the_old_output_stays(
        tiny_data, long_split, tiny_prepared, tmp_path):
    out, before = _prepared_copy(tiny_prepared, tmp_path)
    proc, workers, family = _augment_with_workers_stopped(tiny_data, long_split, out, tmp_path)
    try:
        os.kill(workers[0], signal.SIGKILL)  # as the kernel's OOM killer would
        for pid in workers[1:]:
            os.kill(pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
    finally:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 2, err.decode()[-3000:]
    (line,) = [x for x in err.decode().strip().splitlines() if not _progress_line(x)]
    assert re.fullmatch(rf"postergenre augment: error: augment \w+: a worker process ended "
                        rf"abruptly \(killed, perhaps for lack of memory\) while rendering "
                        rf"{re.escape(str(tiny_data))}/posters/tt\d+\.jpg or one of the \d+ "
                        r"poster\(s\) after it; the output folder is left as it was", line), line
    assert _tree_digests(out) == before


def test_a_full_disk_is_one_line_naming_the_shard_and_the_old_output_stays(
        tiny_data, tiny_split, tiny_prepared, tmp_path):
    import resource

    out, before = _prepared_copy(tiny_prepared, tmp_path)

    def small_files() -> None:  # in the child: writes past 16 KB fail, without SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    done = subprocess.run([sys.executable, "-m", "postergenre.cli", "augment", "--data",
                           str(tiny_data), "--split", str(tiny_split), "--out", str(out),
                           "--image-size", "48"], capture_output=True, text=True,
                          preexec_fn=small_files, cwd=tmp_path, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    # Piped: the posters' progress lines, then the one error line.
    (line,) = [x for x in done.stderr.strip().splitlines() if not _progress_line(x)]
    assert re.fullmatch(rf"postergenre augment: error: {re.escape(str(out))}\.partial/"
                        r"\w+-00000\.tfrecord: File too large", line), line
    assert _tree_digests(out) == before


def test_an_undecodable_poster_leaves_the_old_output(tiny_data, tiny_split, tiny_prepared,
                                                      tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_data, broken)
    bad = broken / read_labels(tiny_split / "test.csv")["poster"].iloc[-1]
    bad.write_bytes(b"\xff\xd8\xff not a whole jpeg")
    out, before = _prepared_copy(tiny_prepared, tmp_path)
    with pytest.raises(PosterDecodeError, match=f"{bad}: not a decodable image"):
        augment_and_shard(broken, tiny_split, out, AugmentConfig(image_size=48))
    assert _tree_digests(out) == before
    assert not (tmp_path / "prepared.partial").exists()


def test_a_second_augment_on_the_same_output_is_one_line(tiny_data, tiny_split,
                                                         tiny_prepared, tmp_path, capsys):
    import fcntl

    from postergenre.cli import main

    out, before = _prepared_copy(tiny_prepared, tmp_path)
    partial = tmp_path / "prepared.partial"
    partial.mkdir()
    held = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)  # as a running augment holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        code = main(["augment", "--data", str(tiny_data), "--split", str(tiny_split),
                     "--out", str(out), "--image-size", "48"])
    finally:
        os.close(held)
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"postergenre augment: error: {out}: another process is writing it (its "
                    "prepared.partial folder is locked); wait for it to finish or stop it")
    assert _tree_digests(out) == before


def test_a_fifo_poster_is_refused_by_the_worker_not_waited_on(tiny_data, tiny_split, tmp_path):
    fifo = tmp_path / "poster.jpg"
    os.mkfifo(fifo)
    settings = RenderSettings(TINY_IMAGE, ("hflip",), 0.8, 0.1, 0, 90)
    job = PosterJob(str(fifo), "tt0000001", "train", bytes(19), 0)
    got: dict = {}

    def render() -> None:
        try:
            render_poster(job, settings)
        except PosterDecodeError as err:
            got["error"] = str(err)

    worker = threading.Thread(target=render, daemon=True)
    worker.start()
    worker.join(120)  # a bound for a failure only: refusing the FIFO takes no time
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("the worker waited on a FIFO")
    assert got == {"error": f"{fifo}: not a regular file"}


@pytest.mark.parametrize("size", [TINY_IMAGE, 224])
def test_the_stored_original_is_prepare_poster_with_or_without_copies(tmp_path, size):
    """The original in the shards is the served preprocessing's output, whether the copies'
    larger decode could be reused for it (32 px: 1/8 scale both) or not (224 px: the copies
    decode at full scale, the original at 1/2)."""
    from postergenre.data.images import encode_jpeg
    from postergenre.data.render import prepare_poster

    rng = np.random.default_rng(0)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (60, 40, 3), np.uint8), 15, 0), 15, 1)
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(encode_jpeg(rgb))  # 600 x 900
    settings = RenderSettings(size, tuple(CONFIG.transforms), CONFIG.crop_min_scale,
                              CONFIG.jitter, CONFIG.seed, 90)
    expected = prepare_poster(poster.read_bytes(), str(poster), size, 90)
    labels = bytes(19)
    for copies in (0, 2):
        records = render_poster(PosterJob(str(poster), "tt0000001", "train", labels, copies),
                                settings)
        assert len(records) == 1 + copies
        image = _example(records[0]).features.feature["image"].bytes_list.value[0]
        assert image == expected, copies
