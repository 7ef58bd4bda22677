"""Worker: times cuDNN with PyTorch's defaults (cudnn.benchmark = False) in a fresh process, so no
autotuned plan from the parent's cache leaks into the "defaults" column. Prints one JSON line."""
import json
import sys
import warnings

from .runner import time_native
from .shapes import SWEEP


def main():
    warnings.simplefilter("ignore")
    a = json.loads(sys.argv[1])
    case = next(c for c in SWEEP if c.name == a["case"])
    res = time_native(case, a["layouts"], a["allow"], a["passes"], a["reps"], benchmark=False)
    print(json.dumps([[list(k), list(v)] for k, v in res.items()]))


if __name__ == "__main__":
    main()
