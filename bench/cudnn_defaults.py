"""Worker: times cuDNN with PyTorch's defaults (cudnn.benchmark = False) in a fresh process, so no
autotuned plan from the parent's cache leaks into the "defaults" column, and ours in alternating rounds
with it (runner.interleaved), so that this column's speedup compares two series of one process. Prints
one JSON line."""
import json
import sys
import warnings

from .runner import PAIRINGS, CaseTensors, _native_fns, _our_fns, cudnn_mode, interleaved, time_native
from .shapes import Case


def main():
    warnings.simplefilter("ignore")
    a = json.loads(sys.argv[1])
    case = Case.from_json(a["case"])
    res = time_native(case, a["layouts"], a["allow"], a["passes"], a["reps"], benchmark=False)
    ours = {}
    for cl in a["layouts"]:
        t = CaseTensors(case, cl)
        native = _native_fns(t)
        for prec in a.get("precisions", []):
            allow = PAIRINGS[prec]
            _, fns = _our_fns(t, prec)
            with cudnn_mode(allow, False):
                for ps in a["passes"]:
                    ours[(cl, prec, ps)] = interleaved(fns[ps], native[ps], res[(cl, allow, ps)][0], a["reps"],
                                                       a["rounds"])
        del t
    print(json.dumps(dict(native=[[list(k), list(v)] for k, v in res.items()],
                          ours=[[list(k), list(v)] for k, v in ours.items()])))


if __name__ == "__main__":
    main()
