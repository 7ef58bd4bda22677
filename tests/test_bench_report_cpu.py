"""The benchmark's bookkeeping (table, geometric means, --check), on made-up rows (CPU)."""
import math

from bench import report
from bench.shapes import HEADLINE, SWEEP


def _row(case, prec, layout, speedup, fast=True, pass_="step"):
    return dict(case=case, shape=case, layout=layout, precision=prec, cudnn_tf32=prec == "tf32", pass_=pass_,
                fast_path=fast, ours_ms=1.0, ours_tflops=10.0, ours_ceiling_frac=0.1, cudnn_default_ms=2.0,
                cudnn_benchmark_ms=speedup, cudnn_tflops=5.0, speedup=speedup, ours_err=1e-7,
                cudnn_err=1e-7, ours_mem_mb=1.0, cudnn_mem_mb=2.0)


def test_geomean_per_precision_and_layout_skips_fallback_rows():
    rows = [_row("a", "tf32", "NDHWC", 2.0), _row("b", "tf32", "NDHWC", 8.0),
            _row("c", "tf32", "NDHWC", 100.0, fast=False), _row("a", "fp32", "NCDHW", 0.5),
            _row("a", "tf32", "NDHWC", 50.0, pass_="forward")]
    gm = report.geomeans(rows)
    assert math.isclose(gm[("tf32", "NDHWC")], 4.0) and math.isclose(gm[("fp32", "NCDHW")], 0.5)
    fwd = report.geomeans(rows, "forward")
    assert list(fwd) == [("tf32", "NDHWC")] and math.isclose(fwd[("tf32", "NDHWC")], 50.0)


def test_check_flags_only_slow_fast_path_rows():
    rows = [_row("a", "tf32", "NDHWC", 0.9), _row("b", "tf32", "NDHWC", 1.1),
            _row("c", "tf32", "NDHWC", 0.1, fast=False)]
    assert [r["case"] for r in report.slower_than(rows, 1.0)] == ["a"]
    assert report.slower_than(rows, 0.5) == []


def test_table_marks_fallback_and_has_every_row():
    rows = [_row("a", "tf32", "NDHWC", 1.5), _row("k2", "tf32", "NDHWC", 0.7, fast=False)]
    text = report.table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and "k2 (fallback)" in text and "1.50x" in text


def test_sweep_is_realistic_and_covers_the_asked_ranges():
    assert len(SWEEP) >= 12 and SWEEP[0] == HEADLINE
    chans = {c.c_in for c in SWEEP} | {c.c_out for c in SWEEP}
    assert min(chans) <= 8 and max(chans) >= 256
    assert {c.k for c in SWEEP} >= {3, 5} and {c.stride for c in SWEEP} >= {1, 2}
    assert min(c.n for c in SWEEP) == 1 and max(c.n for c in SWEEP) >= 16
    assert min(min(c.spatial) for c in SWEEP) <= 8 and max(max(c.spatial) for c in SWEEP) >= 128
    assert len({c.name for c in SWEEP}) == len(SWEEP)
    assert math.isclose(HEADLINE.flops, 440.3e9, rel_tol=1e-3)


def test_summary_has_every_pass_and_worst_orders_by_lowest_speedup():
    rows = [_row("a", "tf32", "NDHWC", 2.0), _row("b", "tf32", "NDHWC", 0.5), _row("b", "fp32", "NDHWC", 3.0),
            _row("c", "tf32", "NCDHW", 0.2, fast=False), _row("a", "tf32", "NDHWC", 4.0, pass_="forward")]
    s = report.summary(rows)
    assert set(s) == {"step", "forward"} and math.isclose(s["forward"]["tf32/NDHWC"], 4.0)
    assert [c for c, _ in report.worst(rows, n=2)] == ["b", "a"]


def test_merge_joins_parts_in_sweep_order(tmp_path, monkeypatch):
    import json
    import os
    from bench import merge
    gpu = tmp_path / "results" / "GPU"
    gpu.mkdir(parents=True)
    env = dict(gpu="GPU", torch="x", cudnn=1, ceilings=dict(tf32_tflops=400.0, fp32_tflops=50.0, copy_tbs=3.0))
    for stem, case in (("a", SWEEP[2].name), ("b-partial", SWEEP[1].name)):
        (gpu / (stem + ".json")).write_text(json.dumps(dict(environment=env, rows=[_row(case, "tf32", "NDHWC", 2.0)])))
    monkeypatch.setattr(report, "RESULTS_ROOT", str(tmp_path / "results"))
    assert merge.main(["a", "b", "--out", "joined"]) == 0
    out = json.loads((gpu / "joined.json").read_text())
    assert [r["case"] for r in out["rows"]] == [SWEEP[1].name, SWEEP[2].name] and len(out["environment"]["parts"]) == 2
    assert os.path.exists(gpu / "joined.csv")


def test_interleaved_alternates_ours_and_cudnn_and_takes_medians(monkeypatch):
    """Ours and cuDNN alternate series (cuDNN's first series is time_native's), and each figure is the
    median of its own rounds: one slow round on either side does not move it."""
    from bench import runner
    calls, times = [], {"ours": iter([1.0, 9.0, 1.2]), "cudnn": iter([2.1, 2.2])}

    def fake_bench(fn, reps):
        calls.append(fn())
        return next(times[calls[-1]])

    monkeypatch.setattr(runner, "bench", fake_bench)
    ours, cudnn = runner.interleaved(lambda: "ours", lambda: "cudnn", 50.0, reps=3, rounds=3)
    assert calls == ["ours", "cudnn", "ours", "cudnn", "ours"]
    assert (ours, cudnn) == (1.2, 2.2)


def test_speedup_is_the_lower_same_process_ratio():
    """Each cuDNN mode is compared with ours from its own process; the faster mode (lower ratio) counts,
    not the faster cuDNN figure across processes against ours from another."""
    from bench.runner import speedup_of
    assert math.isclose(speedup_of(1.0, 2.0, 0.8, 1.2), 1.5)  # defaults process: 1.2 / 0.8
    assert math.isclose(speedup_of(1.0, 1.1, 0.8, 1.2), 1.1)  # autotuned: 1.1 / 1.0
    assert math.isclose(speedup_of(0.5, 0.4, 0.5, 9.0), 0.8)


def test_ceilings_line_names_the_host_pace_when_measured():
    """The first line of a run: the host's pace where the run measured it (v0.82 on), nothing in its
    place for older environments (bench.merge reads those too)."""
    env = dict(gpu="GPU", torch="2.11", cudnn=91900,
               ceilings=dict(tf32_tflops=388.2, fp32_tflops=50.4, copy_tbs=4.26))
    old = report.ceilings_line(env)
    assert old == "GPU: TF32 matmul 388 TFLOP/s, FP32 matmul 50.4 TFLOP/s, copy 4.26 TB/s; torch 2.11, cuDNN 91900"
    env["ceilings"]["host_us"] = 5.14
    assert report.ceilings_line(env) == old.replace("TB/s;", "TB/s, host 5.1 us per aten launch;")
