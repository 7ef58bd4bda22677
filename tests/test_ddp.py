"""DDP with convert_model: two ranks agree with one process over the same global batch.

CPU/gloo always (PyTorch fallback path, checks the wiring); NCCL with one GPU per rank where two
GPUs and the extension are there (the CUTLASS path).
"""
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import gpu_skip_reason

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "ddp_train.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args):
    # The ranks' collectives time out after 180 s, so a stuck rendezvous fails with gloo's or NCCL's message. (v0.81:
    # one CI run had one failure about 600 s in, its name cut off by the CI's tail; this test and the shared-memory
    # mirror's nvcc are the two with a 600 s limit. Not reproduced in ten runs.)
    cmd = [sys.executable, EXAMPLE, *args, "--port", str(_free_port()), "--timeout", "180"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        text = [v.decode(errors="replace") if isinstance(v, bytes) else (v or "") for v in (e.stdout, e.stderr)]
        out = text[0] + text[1][-4000:]
        pytest.fail(f"{' '.join(cmd)} ran past 600 s:\n{out}")
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert "max relative weight difference" in r.stdout
    return r.stdout


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_ddp_two_cpu_ranks_gloo_match_single_process():
    _run("--spawn", "2", "--backend", "gloo", "--cpu")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2 or bool(gpu_skip_reason()),
                    reason="needs 2 GPUs and the CUTLASS extension")
def test_ddp_two_gpus_nccl_match_single_process():
    print(_run("--spawn", "2", "--backend", "nccl"))
