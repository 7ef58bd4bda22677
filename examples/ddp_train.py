"""DistributedDataParallel training of a small 3D decoder whose ConvTranspose3d layers are
convt3d_cutlass's (``convert_model``), checked against one process over the same global batch.

  torchrun --nproc_per_node=2 examples/ddp_train.py            # NCCL, one GPU per rank
  python examples/ddp_train.py --spawn 2 --backend gloo --cpu  # two CPU ranks (CI; PyTorch fallback)

Each rank prints nothing; rank 0 prints the largest relative difference of the final weights
from the single-process run and exits 1 if it exceeds --tol.
"""
import argparse
import datetime
import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import convt3d_cutlass as ct


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(4, 16, 3, padding=1)
        self.up1 = nn.ConvTranspose3d(16, 12, 3, stride=2, padding=1)
        self.up2 = nn.ConvTranspose3d(12, 8, 3, stride=1, padding=1, bias=False)
        self.up3 = nn.ConvTranspose3d(8, 4, 5, stride=2, padding=2)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.up1(x))
        return self.up3(torch.relu(self.up2(x)))


def data(global_batch, device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(global_batch, 4, 6, 6, 6, generator=g)
    y = torch.randn(global_batch, 4, 21, 21, 21, generator=g)
    return x.to(device), y.to(device)


def train(model, x, y, steps, lr=1e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model


def make_model(device, precision):
    torch.manual_seed(0)
    return ct.convert_model(Decoder(), precision=precision).to(device)


def run(rank, world, backend, use_cpu, steps, global_batch, tol, port, timeout_s=None):
    warnings.simplefilter("ignore")  # CPU ranks run the PyTorch fallback and say so once
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    # A stuck rendezvous or collective fails after timeout_s with the backend's message (torch's default: minutes).
    timeout = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    dist.init_process_group(backend, rank=rank, world_size=world, **timeout)
    if use_cpu:
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    torch.backends.cudnn.allow_tf32 = False  # the reference's Conv3d in exact fp32 too
    x, y = data(global_batch, device)
    per = global_batch // world
    ddp = nn.parallel.DistributedDataParallel(
        make_model(device, "fp32"), device_ids=None if use_cpu else [device.index])
    train(ddp, x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per], steps)
    worst = 0.0
    if rank == 0:
        ref = train(make_model(device, "fp32"), x, y, steps)
        for (name, p), q in zip(ddp.module.named_parameters(), ref.parameters()):
            worst = max(worst, ((p - q).norm() / q.norm()).item())
        print(f"ddp world={world} backend={backend} device={device}: max relative weight difference "
              f"{worst:.2e} (tol {tol:g})", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0 and worst > tol:
        sys.exit(1)


def _spawned(rank, *args):
    run(rank, *args)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default=None, help="nccl (GPUs) or gloo")
    ap.add_argument("--cpu", action="store_true", help="ranks on the CPU")
    ap.add_argument("--spawn", type=int, default=0, help="start this many ranks here (no torchrun)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--global-batch", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--port", type=int, default=29511)
    ap.add_argument("--timeout", type=float, default=0, help="seconds before a stuck collective fails (0: torch's)")
    a = ap.parse_args(argv)
    use_cpu = a.cpu or not torch.cuda.is_available()
    backend = a.backend or ("gloo" if use_cpu else "nccl")
    if a.spawn:
        torch.multiprocessing.spawn(_spawned, args=(a.spawn, backend, use_cpu, a.steps, a.global_batch,
                                                    a.tol, a.port, a.timeout), nprocs=a.spawn, join=True)
    else:  # under torchrun
        run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), backend, use_cpu, a.steps,
            a.global_batch, a.tol, a.port, a.timeout)


if __name__ == "__main__":
    main()
