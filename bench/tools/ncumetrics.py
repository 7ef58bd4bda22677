"""No GPU: one line per `ncu --csv --page raw` export (with bench/tools/ncuigfwd.py, v0.40): the kernel's time,
DRAM bytes read and written, L2 write sectors, SM throughput and instructions executed."""
import csv, sys
want = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_sectors_op_write.sum",
        "sm__throughput.avg.pct_of_peak_sustained_elapsed", "smsp__inst_executed.sum"]
for f in sys.argv[1:]:
    rows = [r for r in csv.reader(open(f)) if r]
    hi = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    hdr, units, vals = rows[hi], rows[hi + 1], rows[hi + 2]
    print(f, "  ".join(f"{w.split('.')[0]} {vals[hdr.index(w)]} {units[hdr.index(w)]}" for w in want))
