"""Cross-build A/B: alternate steptime.py processes between an old install (OLD, a --target folder put
first on PYTHONPATH) and the installed package, ROUNDS times each, and print each key's medians and the
ratio old/new (above 1: the new build is faster).

    OLD=/tmp/siteA ROUNDS=3 python bench/tools/abbuild.py CASES [PASSES [PRECISION]]
"""
import os
import statistics
import subprocess
import sys

old, rounds = os.environ["OLD"], int(os.environ.get("ROUNDS", "3"))
args = [sys.executable, "bench/tools/steptime.py"] + sys.argv[1:]
times = {"old": {}, "new": {}}
for r in range(rounds):
    for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
        env = dict(os.environ)
        env["PYTHONPATH"] = (old + os.pathsep if side == "old" else "") + "."
        line = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.split()
        for kv in line:
            k, v = kv.split("=")
            times[side].setdefault(k, []).append(float(v))
for k in times["new"]:
    o, n = statistics.median(times["old"][k]), statistics.median(times["new"][k])
    print(f"{k:32s} old {o:8.4f}  new {n:8.4f}  old/new {o / n:.3f}   old {times['old'][k]} new {times['new'][k]}")
