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
    r = subprocess.run([sys.executable, EXAMPLE, *args, "--port", str(_free_port())],
                       capture_output=True, text=True, timeout=600)
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
