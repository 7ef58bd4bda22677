"""Whether a change left other kernel instantiations' code alone: PTX of the working tree against a git
revision, kernel by kernel (no GPU; nvcc and the nvidia-cutlass headers).

Usage: python bench/tools/ptxsame.py REV [TU-name-regex] [--added-arg Lb0E] [--renumber]
Compiles every csrc/kernels/*.cu matching the regex at REV (a temporary worktree) and in the working
tree to PTX for sm_90a, and compares each kernel of REV with the working tree's kernel of the same
name; --added-arg names a template argument the working tree appends to every instantiation of REV
(e.g. a new bool defaulted to false: Lb0E). Basic-block numbers and the parameter block's size are
ignored; a kernel is 'identical' when nothing else differs, which makes its SASS identical too.
--renumber also renames the virtual registers in order of first use (and drops their declarations), for a
refactor that moved code into a function (v0.38: the grad_weight kernels' shared TMA loop): 'identical' then
means the same instructions in the same order up to register names, not byte-identical PTX.
PTXSAME_SHOW=N prints the first N diff lines of each kernel that differs.
"""
import difflib
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

rev = sys.argv[1]
pattern = re.compile(sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else ".")
added = sys.argv[sys.argv.index("--added-arg") + 1] if "--added-arg" in sys.argv else ""
renumber = "--renumber" in sys.argv
root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
cl = os.environ.get("CUTLASS_DIR")  # as setup.py: CUTLASS_DIR, else the nvidia-cutlass wheel's headers
if not cl:
    import cutlass_library
    cl = os.path.join(os.path.dirname(cutlass_library.__file__), "source")
tus = sorted(f[:-3] for f in os.listdir(os.path.join(root, "csrc", "kernels")) if f.endswith(".cu") and pattern.search(f))


def ptx(tree, tu, out):
    subprocess.run(["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
                    "-I", "csrc", "-I", f"{cl}/include", "-I", f"{cl}/tools/util/include", "-ptx",
                    f"csrc/kernels/{tu}.cu", "-o", out], cwd=tree, check=True)


def _renumbered(body):
    """body with each virtual register named by its class and order of first use."""
    names, counts = {}, {}

    def name(m):
        if m.group(0) not in names:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
            names[m.group(0)] = f"%{m.group(1)}#{counts[m.group(1)]}"
        return names[m.group(0)]
    return re.sub(r"%(rd|r|fd|f|p|rs|h|hh)(\d+)\b", name, body)


def kernels(path):
    txt = open(path).read()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\.visible \.entry (\S+)\(", txt)]
    out = {}
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(txt)
        body = re.sub(r"^\s*// \.globl.*$", "", txt[pos:end], flags=re.M).replace(name, "KERNEL")
        body = re.sub(r"\$L__BB\d+_", "$L__BB_", body)
        if renumber:
            body = _renumbered(re.sub(r"\.reg \.\S+\s+%\S+<\d+>;", "", re.sub(r"\$L__BB_\d+", "$L__BB", body)))
        out[name] = re.sub(r"_param_0\[\d+\]", "_param_0[N]", body).splitlines()
    return out


with tempfile.TemporaryDirectory() as tmp:
    wt = os.path.join(tmp, "rev")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, rev], cwd=root, check=True)
    try:
        jobs = [(tree, tu, os.path.join(tmp, f"{tag}-{tu}.ptx")) for tu in tus for tag, tree in (("old", wt), ("new", root))]
        with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
            list(ex.map(lambda j: ptx(*j), jobs))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=root, check=True)
    same = differ = 0
    for tu in tus:
        old, new = kernels(os.path.join(tmp, f"old-{tu}.ptx")), kernels(os.path.join(tmp, f"new-{tu}.ptx"))
        for name, body in old.items():
            mapped = name.replace("EEv", added + "EEv", 1) if added else name
            if mapped not in new:
                print(f"{tu}: {name[-70:]} has no counterpart")
                differ += 1
                continue
            d = list(difflib.unified_diff(body, new[mapped], lineterm="", n=0))
            print(f"{tu}: ...{name[-62:-40]} {'identical' if not d else f'DIFFERS ({len(d)} diff lines)'}")
            if d and os.environ.get("PTXSAME_SHOW"): print("\n".join(d[:int(os.environ["PTXSAME_SHOW"])]))
            same += not d
            differ += bool(d)
        extra = [n for n in new if n not in {o.replace("EEv", added + "EEv", 1) if added else o for o in old}]
        for n in extra:
            print(f"{tu}: new kernel ...{n[-62:-40]}")
    print(f"{same} identical, {differ} different")
