"""The benchmarks' own machinery (bench/measure.py, the sliding-window count) and the
scripts that run quickly enough here: bench/gpu.py without a GPU and on the CPU,
bench/ingest.py at small limits, bench/train.py on a few posters, bench/precision.py and
bench/dedup.py at small sizes. Speed targets are never asserted here (the bench scripts
print them); these tests check that the scripts run, report what they say they do, and
end with the two lines every bench ends with: `ceiling: ...`, then `NAME: RESULT`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import measure  # noqa: E402


def _run(script: str, *args: str, env: dict[str, str] | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def closing(result: subprocess.CompletedProcess, name: str) -> tuple[str, str]:
    """The bench ran, and its last two lines are `ceiling: ...` and `NAME: FIGURE ...`:
    returns (ceiling, result) without their labels."""
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2, result.stdout
    assert lines[-2].startswith("ceiling: "), lines[-2]
    assert re.match(rf"{name}: [\d,]*\d(\.\d+)?(e[+-]\d+)?x? ", lines[-1]), lines[-1]
    return lines[-2].removeprefix("ceiling: "), lines[-1].removeprefix(f"{name}: ")


BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_tree_cpu_counts_work_done_in_a_grandchild_process():
    """A process that starts a child which does the work (as a fork server starts
    augment's workers): this process's own CPU clock misses it, the tree's does not."""
    nested = (f"import subprocess, sys; subprocess.run([sys.executable, '-c', "
              f"{BURN.format(seconds=0.6)!r}], check=True)")
    run = measure.measure(lambda: subprocess.run([sys.executable, "-c", nested], check=True),
                          tree=True)
    own = measure.measure(lambda: subprocess.run([sys.executable, "-c", nested], check=True))
    assert run.cpu_s >= 0.6
    assert own.cpu_s < 0.3
    # Live descendants count too: the child is still alive when the clock is read. It burns
    # 0.3 s of CPU once told to and then says so: the test waits for the work, not the clock.
    told = ("import sys, time\nsys.stdin.readline()\n" + BURN.format(seconds=0.3)
            + "\nprint('burnt', flush=True)\ntime.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", told], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        start = measure.tree_cpu_seconds()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"
        assert measure.tree_cpu_seconds() - start >= 0.3
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_settle_waits_for_work_left_running_below_a_child(tmp_path):
    """As augment leaves its workers (the fork server's children) to end on their own:
    the CPU clock is read after they have ended. The worker does its work only once the
    call has returned (it waits for a file the settle step writes), so the CPU it counts
    can only have been taken after the wall clock stopped; no timing is assumed."""
    go = tmp_path / "go"
    worker = (f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
              + BURN.format(seconds=0.6))
    server = ("import subprocess, sys, time\n"
              f"worker = subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
              "print('started', flush=True)\nworker.wait()\ntime.sleep(600)")
    started: list[subprocess.Popen] = []

    def call() -> None:
        started.append(subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE,
                                        text=True))
        assert started[0].stdout.readline().strip() == "started"

    def settle() -> None:
        go.touch()
        measure.grandchildren_ended(timeout_s=600)

    try:
        run = measure.measure(call, tree=True, settle=settle)
        assert run.cpu_s >= 0.6
        assert started[0].poll() is None  # the "fork server" itself is not waited for
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_repeat_reports_medians_and_cpu_per_item():
    calls = iter([0.0, 0.05, 0.01])

    def work() -> int:
        pause = next(calls)
        time.sleep(pause)  # wall time, no CPU
        end = time.process_time() + 0.02
        while time.process_time() < end:  # CPU time
            pass
        return 7

    summary = measure.repeat(work, items=4, times=3)
    assert len(summary.runs) == 3 and {r.value for r in summary.runs} == {7}
    walls = sorted(r.wall_s for r in summary.runs)
    assert summary.wall_s == walls[1] >= 0.03  # the median run: 10 ms asleep + 20 ms busy
    assert summary.cpu_s >= 0.02 and summary.cpu_us_per_item == 1e6 * summary.cpu_s / 4
    assert summary.rate == 4 / summary.wall_s
    assert re.fullmatch(r"[\d.]+ items/s \(median of 3: [\d./]+ s\), \d+ us CPU per item, "
                        r"[\d.]+ cores busy", summary.describe())
    with pytest.raises(ValueError, match="at least 1"):
        measure.repeat(work, items=1, times=0)


def test_interleaved_alternates_the_sides_and_counts_each_sides_items():
    order: list[str] = []
    summaries = measure.interleaved({"a": lambda: order.append("a") or 1,
                                     "b": lambda: order.append("b") or 2},
                                    times=3, items={"a": 10, "b": 12})
    assert order == ["a", "b"] * 3
    assert [r.value for r in summaries["a"].runs] == [1, 1, 1]
    assert summaries["a"].items == 10 and summaries["b"].items == 12
    assert measure.interleaved({"a": lambda: None}, times=1, items=5)["a"].items == 5
    with pytest.raises(ValueError, match="at least 1"):
        measure.interleaved({"a": lambda: None}, times=0, items=1)


def test_load_and_memory_readings():
    assert measure.load_average() >= 0
    assert re.fullmatch(r"load average \(1 min\) at start: [\d.]+ on \d+ CPUs",
                        measure.load_line("start"))
    before = measure.rss_mib()
    block = bytearray(64 * 2**20)  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert measure.rss_mib() - before > 50
    assert measure.peak_rss_mib() >= measure.rss_mib() - 1
    del block


def test_closing_lines_put_the_ceiling_then_the_result_first(capsys):
    measure.closing_lines("dedup", "one sort 0.2 s CPU", "3.05 s CPU for 1M hashes")
    assert capsys.readouterr().out == ("ceiling: one sort 0.2 s CPU\n"
                                       "dedup: 3.05 s CPU for 1M hashes\n")
    measure.closing_lines("train", "GEMM", "0.98x the study's speed")
    assert capsys.readouterr().out.splitlines()[-1] == "train: 0.98x the study's speed"
    # A line whose first figure is not its result, a missing ceiling, a name with spaces.
    with pytest.raises(ValueError, match="must start with its figure"):
        measure.closing_lines("precision", "GEMM", "float32 copy 0.53x the speed")
    with pytest.raises(ValueError, match="ceiling line is empty"):
        measure.closing_lines("dedup", " ", "3.05 s")
    with pytest.raises(ValueError, match="bench name"):
        measure.closing_lines("train img/s", "GEMM", "1.0x")
    assert capsys.readouterr().out == ""


def test_gemm_rate_and_model_flops():
    assert measure.gemm_gflops_per_cpu_second(n=256, repeats=2) > 0
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 6 x 6 positions, 3*3*3*4 weights
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)  # 144 inputs, 5 outputs
    inner = keras.Model(inputs, outputs)
    assert measure.forward_flops(inner) == 2 * (36 * 108 + 144 * 5)
    nested = keras.Input((8, 8, 3))  # a model inside a model counts once, fully
    outer = keras.Model(nested, keras.layers.Dense(2)(inner(nested)))
    assert measure.forward_flops(outer) == 2 * (36 * 108 + 144 * 5 + 5 * 2)


def test_max_in_window_counts_every_sliding_second():
    from ingest import max_in_window

    assert max_in_window([]) == 0
    # (t - 1, t]: at t = 1.0 the request at 0.0 has left the window.
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 0.5, 0.99, 0.999]) == 4
    # A burst straddling whole seconds is still found (fixed windows would split it).
    assert max_in_window([0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 2.5]) == 8
    assert max_in_window([3.0, 1.0, 2.0, 1.5]) == 2  # unsorted input


def test_gpu_bench_without_a_gpu_says_so_and_exits_0():
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on a GPU machine too.
    result = _run("gpu.py", env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "gpu: no GPU is visible to TensorFlow; nothing to measure")


@pytest.mark.slow
def test_gpu_bench_trains_both_models_on_the_cpu():
    result = _run("gpu.py", "--device", "cpu", "--posters", "48", "--sizes", "32", "40",
                  "--batch", "16", "--repeats", "1", env={"CUDA_VISIBLE_DEVICES": ""})
    ceiling, last = closing(result, "gpu")
    for kind in ("scratch", "transfer"):
        assert re.search(rf"^{kind} 32 px: [\d.]+ images/s .*GPU utilisation n/a", result.stdout,
                         re.M), result.stdout
    assert re.fullmatch(r"input pipeline alone \d+ img/s at 32 px \(\d+ us host CPU per image\), "
                        r"\d+ img/s at 40 px \(\d+ us host CPU per image\), \d+ host CPUs; "
                        r"matmul [\d,]+ GFLOP/s on CPU \(float32, 1024 x 1024, wall clock\)",
                        ceiling), ceiling
    assert re.fullmatch(r"\d+ img/s scratch CNN at 32 px \(\d+ us host CPU per image, median "
                        r"epoch wall [\d.]+ s\); transfer \d+ img/s \(\d+ us host CPU per image\); "
                        r"CPU, float32; 40 px: scratch \d+, transfer \d+ img/s", last), last


@pytest.mark.slow
def test_train_bench_compares_in_the_study_precision_and_ours():
    """Ours in bfloat16 (asked for, so on any CPU): the study's side stays float32 and
    ours runs again in float32, each with its own line; the transfer line says what its
    ratio measures."""
    result = _run("train.py", "--posters", "700", "--size", "32", "--epochs", "1",
                  "--repeats", "1", "--transfer-repeats", "1", "--mixed-precision",
                  "bfloat16", env={"CUDA_VISIBLE_DEVICES": ""})
    ceiling, last = closing(result, "train")
    out = result.stdout
    assert "ours' precision mixed_bfloat16 (--mixed-precision bfloat16), the study's float32" \
        in out
    for side in ("ours  (", "ours float32 (", "study ("):
        assert re.search(rf"scratch CNN {re.escape(side)}.*: [\d.]+ images/s \(median of 1",
                         out), out
    # The VGG16 figures are per image and epoch, on their own line, not in the result.
    assert re.search(r"VGG16 head, CPU per image and epoch over 1 epochs: ours \d+ us .*, "
                     r"study \d+ us .*no measure of speed", out), out
    assert re.fullmatch(r"float32 GEMM \d+ GFLOP per CPU-second \(one thread\) on this CPU "
                        r"\(\d+ CPUs\); the "
                        r"scratch CNN's training step at 32 px is about \d+ MFLOP per image "
                        r".*, at least \d+ us CPU per image at that rate \(ours \d+ us, "
                        r"study \d+ us\)", ceiling), ceiling
    found = re.fullmatch(r"([\d.]+)x the study's speed by CPU per image, scratch CNN \(ours "
                         r"(\d+) us vs study (\d+) us CPU per image; wall \d+ vs \d+ img/s\), "
                         r"ours in mixed_bfloat16, the study's float32; ours in float32 \d+ us "
                         r"CPU per image", last)
    assert found, last
    ratio, ours, study = float(found[1]), int(found[2]), int(found[3])
    assert ratio == pytest.approx(study / ours, rel=0.02, abs=0.01)


def test_precision_bench_scores_both_sides_and_ends_with_its_result():
    result = _run("precision.py", "--posters", "8", "--size", "32", "--repeats", "1",
                  env={"CUDA_VISIBLE_DEVICES": ""})
    ceiling, last = closing(result, "precision")
    assert re.fullmatch(r"float32 GEMM \d+ GFLOP per CPU-second \(one thread\) on this CPU "
                        r"\(\d+ CPUs\); the "
                        r"forward pass is \d+ MFLOP per poster at 32 px, at least \d+ us CPU "
                        r"per poster in float32", ceiling), ceiling
    assert re.fullmatch(r"[\d.]+x the speed of mixed_bfloat16 as saved, for the float32 copy "
                        r"\(\d+ us vs \d+ us CPU per poster; wall .*\), max \|probability "
                        r"difference\| 0\.0\d\d\d", last), last


def test_dedup_bench_fits_the_quadratic_search_and_ends_with_its_result():
    result = _run("dedup.py", "--sizes", "2000", "6000", "--quadratic-sizes", "1000", "2000")
    ceiling, last = closing(result, "dedup")
    out = result.stdout
    num = r"[\d,]*\d(?:\.\d+)?(?:e[+-]\d+)?"  # 1,234 or 0.0286 or 9.8e-04
    for size in ("1k", "2k"):  # measured, the same groups as the new search
        assert re.search(rf"^old quadratic search at {size}: CPU [\d.]+ s, wall [\d.]+ s "
                         r"\(median of 3; the same groups", out, re.M), out
    assert "at 2k: EXTRAPOLATED" not in out  # a size it ran at is not extrapolated
    assert re.search(rf"^old quadratic search at 6k: EXTRAPOLATED {num} s CPU \(c n\^2 fitted "
                     r"to its CPU at 1k, 2k; free fit exponent [\d.-]+; not run\)", out, re.M), out
    assert re.fullmatch(rf"at 6k hashes, reading them into an array and one sort .* take "
                        rf"{num} s CPU .*compares {num}M pairs per CPU-second, so comparing "
                        rf"all 1\.8e\+07 pairs would take {num} s CPU", ceiling), ceiling
    found = re.fullmatch(rf"({num}) s CPU for 6k hashes \(([\d.]+) us per hash; wall {num} s, "
                         r"median of 3\), peak \d+ MiB, ([\d,]+) items joined \(60 planted\); "
                         rf"old quadratic search {num} s CPU at 6k \(n\^2 fitted to its runs at "
                         r"1k, 2k\)", last)
    assert found, last
    assert float(found[2]) == pytest.approx(1e6 * float(found[1]) / 6000, rel=0.02, abs=0.01)
    assert 55 <= int(found[3].replace(",", "")) <= 65  # the planted copies, give or take


@pytest.mark.slow
def test_ingest_bench_holds_the_limit_and_reports_it():
    result = _run("ingest.py", "--posters", "12", "--baseline-posters", "3", "--latency",
                  "0.02", "--rate-limit", "15", "--concurrency", "4")
    ceiling, last = closing(result, "ingest")
    assert re.fullmatch(r"[\d.]+ posters/s at these limits: 2 requests per poster, min\(15 "
                        r"requests/s, 4 in flight / \d+ ms round trip measured by the "
                        r"sequential baseline\) / 2; one request at a time, at the 20 ms "
                        r"latency alone: 25\.00 posters/s",
                        ceiling), ceiling
    found = re.fullmatch(r"[\d.]+ posters/s, the real client \(\d+% of the ceiling; [\d.]+ ms "
                         r"CPU per poster, wall [\d.]+ s for 12\); sequential [\d.]+ posters/s "
                         r"\([\d.]+ ms CPU per poster\), ratio [\d.]+x; max (\d+) requests in "
                         r"any 1 s window \(limit 15\), 20 ms latency", last)
    assert found, last
    assert 1 <= int(found.group(1)) <= 15
    # Each run's TMDb requests: 2 per poster (details, poster), none lost or repeated.
    assert "TMDb requests per run 24/24/24" in result.stdout
    assert "TMDb requests per run 6/6/6" in result.stdout


@pytest.mark.slow
def test_startup_bench_measures_every_entry_and_ends_with_its_result():
    """At its smallest size (20 posters, one run per entry): a line per entry, then the
    floor (bare interpreter, import tensorflow) and the result, the entries' CPU sum."""
    result = _run("startup.py", "--posters", "20", "--repeats", "1",
                  env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    for entry in ("validate", "evaluate", "gate", "predict", "batch-predict"):
        assert any(re.fullmatch(rf"{entry}: after [\d.]+ s CPU / [\d.]+ s wall", line)
                   for line in lines), result.stdout
    assert re.fullmatch(r"ceiling: bare python [\d.]+ s CPU; python \+ import tensorflow "
                        r"[\d.]+ s CPU \([\d.]+ s wall\), the floor of each entry that scores "
                        r"with TensorFlow \(evaluate, predict, batch-predict: [\d.]+ s CPU "
                        r"together\)", lines[-2]), lines[-2]
    found = re.fullmatch(r"startup: ([\d.]+) s CPU for validate, evaluate, gate, predict, "
                         r"batch-predict \(wall [\d.]+ s; 20 posters, median of 1\), each in "
                         r"s CPU: validate ([\d.]+), evaluate ([\d.]+), gate ([\d.]+), "
                         r"predict ([\d.]+), batch-predict ([\d.]+)", lines[-1])
    assert found, lines[-1]
    # The result is the sum of the entries (as printed, to their rounding).
    assert abs(float(found.group(1)) - sum(map(float, found.groups()[1:]))) < 0.1
