"""Tables on stdout, JSON + CSV + PNG under bench/results/<gpu>/."""
import csv
import json
import math
import os
import platform
import subprocess

import torch

# "cuDNN def (ours)": cuDNN's defaults and, in brackets, ours timed beside them in their process; "speedup" is
# the lower of the two same-process ratios (bench.runner.speedup_of).
HEADER = ("shape", "layout", "prec", "pass", "ours ms", "TFLOP/s", "%ceil", "cuDNN def (ours)", "cuDNN bench",
          "speedup", "err ours", "err cuDNN", "MiB ours", "MiB cuDNN")


def _defaults_cell(r) -> str:
    ours = r.get("ours_default_ms")  # absent from rows saved before v0.23
    return f"{r['cudnn_default_ms']:.3f}" + (f" ({ours:.3f})" if ours is not None else "")


def fmt_row(r):
    tag = "" if r["fast_path"] else " (fallback)"
    return (r["case"] + tag, r["layout"], r["precision"], r["pass_"], f"{r['ours_ms']:.3f}",
            f"{r['ours_tflops']:.1f}", f"{100 * r['ours_ceiling_frac']:.0f}%", _defaults_cell(r),
            f"{r['cudnn_benchmark_ms']:.3f}", f"{r['speedup']:.2f}x", f"{r['ours_err']:.1e}",
            f"{r['cudnn_err']:.1e}", f"{r['ours_mem_mb']:.0f}", f"{r['cudnn_mem_mb']:.0f}")


def table(rows) -> str:
    cells = [HEADER] + [fmt_row(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def geomeans(rows, pass_="step"):
    """Geometric-mean speedup per (precision, layout) over fast-path rows of one pass."""
    out = {}
    for r in rows:
        if r["pass_"] != pass_ or not r["fast_path"]:
            continue
        out.setdefault((r["precision"], r["layout"]), []).append(math.log(r["speedup"]))
    return {k: math.exp(sum(v) / len(v)) for k, v in out.items()}


def summary(rows):
    """{pass: {"prec/layout": geomean speedup}} for every pass present (fast-path rows)."""
    passes = list(dict.fromkeys(r["pass_"] for r in rows))
    return {ps: {f"{p}/{l}": v for (p, l), v in sorted(geomeans(rows, ps).items())} for ps in passes}


def ceilings_line(env) -> str:
    """The run's first line: the GPU, its measured ceilings, the host's pace (absent from runs before v0.82)
    and the software."""
    c = env["ceilings"]
    host = f", host {c['host_us']:.1f} us per aten launch" if "host_us" in c else ""
    return (f"{env['gpu']}: TF32 matmul {c['tf32_tflops']:.0f} TFLOP/s, FP32 matmul {c['fp32_tflops']:.1f} "
            f"TFLOP/s, copy {c['copy_tbs']:.2f} TB/s{host}; torch {env['torch']}, cuDNN {env['cudnn']}")


def summary_text(summ) -> str:
    return "\n".join(f"geomean speedup ({ps}) {k.replace('/', ' '):14s}: {v:.2f}x"
                     for ps, d in summ.items() for k, v in d.items())


def worst(rows, n=3, pass_="step"):
    """The n shapes with the lowest fast-path speedup in any precision/layout of one pass."""
    by_case = {}
    for r in rows:
        if r["pass_"] == pass_ and r["fast_path"]:
            by_case.setdefault(r["case"], []).append(r)
    return sorted(by_case.items(), key=lambda kv: min(r["speedup"] for r in kv[1]))[:n]


def slower_than(rows, min_speedup):
    """Fast-path rows whose speedup is under min_speedup (what --check fails on)."""
    return [r for r in rows if r["fast_path"] and r["speedup"] < min_speedup]


def environment(ceil):
    def git(*a):
        try:
            # safe.directory: the device's copy of the tree is owned by another user than root
            return subprocess.check_output(["git", "-c", "safe.directory=*", *a], text=True,
                                           stderr=subprocess.DEVNULL).strip()
        except Exception:
            return ""
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.check_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         text=True).strip().splitlines()[0]
    except Exception:
        driver = ""
    # A copy of the tree (the device tool's) can carry stale git metadata: the caller may say which
    # commit it is running.
    commit = os.environ.get("CONVT3D_BENCH_COMMIT") or git("rev-parse", "--short", "HEAD")
    dirty = False if os.environ.get("CONVT3D_BENCH_COMMIT") else bool(git("status", "--porcelain"))
    return dict(gpu=props.name, sms=props.multi_processor_count, driver=driver, cuda=torch.version.cuda,
                torch=torch.__version__, cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
                commit=commit, dirty=dirty,
                ceilings=ceil)


RESULTS_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def results_dir(gpu=None):
    name = (gpu or torch.cuda.get_device_name(0)).replace(" ", "_").replace("/", "_")
    d = os.path.join(RESULTS_ROOT, name)
    os.makedirs(d, exist_ok=True)
    return d


def save(rows, env, stem, extra=None):
    d = results_dir(env["gpu"])
    with open(os.path.join(d, stem + ".json"), "w") as f:
        json.dump(dict(environment=env, rows=rows, **(extra or {})), f, indent=1, default=str)
    if rows:
        with open(os.path.join(d, stem + ".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return d


def plot(rows, env, stem):
    """Speedup per shape and precision, and achieved TFLOP/s against the ceilings."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    step = [r for r in rows if r["pass_"] == "step"] or rows
    shapes = list(dict.fromkeys(r["case"] for r in step))
    series = list(dict.fromkeys((r["precision"], r["layout"]) for r in step))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(shapes) + 4), 9))
    width = 0.8 / max(1, len(series))
    for i, (prec, lay) in enumerate(series):
        ys = [next((r["speedup"] for r in step if r["case"] == s and r["precision"] == prec
                    and r["layout"] == lay), 0) for s in shapes]
        tf = [next((r["ours_tflops"] for r in step if r["case"] == s and r["precision"] == prec
                    and r["layout"] == lay), 0) for s in shapes]
        xs = [j + i * width for j in range(len(shapes))]
        a1.bar(xs, ys, width, label=f"{prec} {lay}")
        a2.bar(xs, tf, width, label=f"{prec} {lay}")
    a1.axhline(1.0, color="k", lw=0.8)
    a1.set_ylabel(f"speedup vs best cuDNN ({step[0]['pass_']})")
    a2.axhline(env["ceilings"]["tf32_tflops"], color="r", ls="--", lw=0.8, label="TF32 matmul ceiling")
    a2.axhline(env["ceilings"]["fp32_tflops"], color="b", ls="--", lw=0.8, label="FP32 matmul ceiling")
    a2.set_yscale("log")
    a2.set_ylabel("ours, TFLOP/s")
    for a in (a1, a2):
        a.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))])
        a.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
        a.legend(fontsize=7, ncol=3)
    fig.suptitle(f"convt3d_cutlass vs cuDNN on {env['gpu']} (torch {env['torch']}, cuDNN {env['cudnn']})")
    fig.tight_layout()
    path = os.path.join(results_dir(env["gpu"]), stem + ".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
