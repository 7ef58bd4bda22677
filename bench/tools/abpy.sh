#!/bin/bash
# Host-side A/B on one machine: an old checkout's Python package (OLD, e.g. from `git worktree add`) against
# this tree's, both on the extension installed here, in alternating subprocesses (CUDA-event step times).
# usage: OLD=/path/to/old/checkout bash bench/tools/abpy.sh [cases]
set -e
SP=$(python -c "import convt3d_cutlass,os;print(os.path.dirname(convt3d_cutlass.__file__))")
cp $SP/_C*.so "$OLD/python/convt3d_cutlass/"
CASES=${1:-video-gen,medium,unet-outpad,gan3d-g1,unet3d-dec1,gan3d-g2,vnet-up}
for r in 1 2 3; do
  echo "old $(PYTHONPATH=$OLD/python:. python bench/tools/steptime.py $CASES 2>/dev/null)"
  echo "new $(PYTHONPATH=. python bench/tools/steptime.py $CASES 2>/dev/null)"
done
