"""Warp-state samples per SASS instruction of the kernels in an ncu report (no GPU needed):

    ncu --nvtx --nvtx-include "prof/" -c 1 --section SourceCounters --section WarpStateStats -o rep \\
        python bench/tools/ncuhl.py
    ncu -i rep.ncu-rep --page source --csv --print-source sass > src.csv
    python bench/tools/ncusrc.py src.csv [THRESHOLD]      # default 0.01 (1% of a kernel's samples)

Per kernel: its sampled instructions, then every instruction above THRESHOLD of its samples and every
barrier wait, warpgroup wait and exit (the landmarks that split the code into roles), each with its share,
its executions and its three largest stall reasons. v0.29 found the forward's epilogue stalls and its
descriptor arithmetic this way.
"""
import csv
import sys


def num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def kernels(path):
    """[(kernel name, header, rows)] of a `--page source --csv` export (one block per kernel)."""
    rows = list(csv.reader(open(path, newline="")))
    starts = [i for i, r in enumerate(rows) if r and r[0] == "Kernel Name"] or [-1]
    out = []
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(rows)
        name = rows[s][1] if s >= 0 else "?"
        hdr = rows[s + 1]
        out.append((name, hdr, [r for r in rows[s + 2:end] if len(r) == len(hdr)]))
    return out


LANDMARKS = ("SYNCS.PHASECHK", "DEPBAR", "EXIT", "USETMAXREG")

if __name__ == "__main__":
    th = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
    for name, hdr, d in kernels(sys.argv[1]):
        a, e, s = (hdr.index(c) for c in ("Warp Stall Sampling (All Samples)", "Instructions Executed", "Source"))
        reasons = [i for i, h in enumerate(hdr) if h.startswith("stall_") and "Not Issued" not in h]
        total = sum(num(r[a]) for r in d) or 1.0
        print(f"== {name[:150]}\n   {len(d)} instructions, {total:.0f} samples")
        for i, r in enumerate(d):
            if num(r[a]) / total > th or any(k in r[s] for k in LANDMARKS):
                top = sorted(((num(r[j]), hdr[j][6:]) for j in reasons), reverse=True)[:3]
                why = " ".join(f"{h}={v:.0f}" for v, h in top if v)
                print(f"{i:5d} {num(r[a]) / total:6.2%} {num(r[e]):10.0f}  {r[s].strip()[:60]:60s} {why}")
