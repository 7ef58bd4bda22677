"""The rounds that the NCDHW layout A/Bs share (igemm_ncdhw_ab.py, igemm_sectors_ab.py): each variant of a
layout policy timed on one layer as GPU time (hostgap.gpu_only), in rounds that rotate the variants' order."""
import statistics

import torch

from bench.runner import _our_fns
from bench.timing import peak_extra_mb
from bench.tools.hostgap import gpu_only


def measure(t, prec, variants, apply, rounds, passes, check):
    """({(variant, pass): median GPU ms over the rounds}, {variant: the step's peak extra MiB}, whether every
    variant's outputs of the passes in ``check`` are the same bits as the first variant's), for the layer's
    tensors t (bench.runner.CaseTensors). apply(v) installs variant v; round r runs the variants rotated by r
    (ABBA for two); outputs and memory come from the first round."""
    res, mem, outs = {}, {}, {}
    for r in range(rounds):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            apply(v)
            fns = _our_fns(t, prec)[1]
            if r == 0:
                outs[v] = [fns[ps]() for ps in check]
                mem[v] = peak_extra_mb(fns["step"])
            for ps in passes:
                res.setdefault((v, ps), []).append(gpu_only(fns[ps]))
    first = outs[variants[0]]
    same = all(torch.equal(a, b) for v in variants[1:] for a, b in zip(first, outs[v]))
    return {key: statistics.median(x) for key, x in res.items()}, mem, same
