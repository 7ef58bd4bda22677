"""k == stride, padding 0 layers as GEMMs plus a pixel (un)shuffle, timed with torch alone (no build).

Each pass of such a layer is one GEMM per sample with one operand pixel-shuffled: forward Z = W^T X
([C_out s^3, C_in] x [C_in, P]), grad_input W G ([C_in, C_out s^3] x [C_out s^3, P]), grad_weight X G^T
summed over samples. This times cuBLAS's GEMMs (the bound a stock CUTLASS GEMM could reach) and torch's
permute copies (the bound of an unfused shuffle) against cuDNN's passes in the same process, to decide
whether a k == s path is worth building and in which form (fused or not). Prints one table."""
import statistics
import sys

import torch
import torch.nn.functional as F

flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")


def bench(fn, reps=40):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def layer(n, ci, co, sp, s, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    d = h = w = sp
    P = d * h * w
    x = torch.randn(n, ci, d, h, w, device="cuda")
    wt = torch.randn(ci, co, s, s, s, device="cuda")
    gy = torch.randn(n, co, d * s, h * s, w * s, device="cuda")
    out = {}
    for bm in (False, True):
        torch.backends.cudnn.benchmark = bm
        xr = x.clone().requires_grad_(True)
        wr = wt.clone().requires_grad_(True)
        out[f"cudnn fwd b{int(bm)}"] = bench(lambda: F.conv_transpose3d(x, wt, stride=s))
        out[f"cudnn gi b{int(bm)}"] = bench(lambda: F.conv3d(gy, wt, stride=s))
        y = F.conv_transpose3d(xr, wr, stride=s)
        out[f"cudnn gw b{int(bm)}"] = bench(lambda: torch.autograd.grad(y, wr, gy, retain_graph=True))
    wf = wt.reshape(ci, co * s ** 3).t().contiguous()          # [K', C_in]
    wg = wt.reshape(ci, co * s ** 3).contiguous()              # [C_in, K']
    xm = x.reshape(n, ci, P)
    z = torch.empty(n, co * s ** 3, P, device="cuda")
    g = torch.empty(n, co * s ** 3, P, device="cuda")
    gx = torch.empty(n, ci, P, device="cuda")
    out["gemm fwd"] = bench(lambda: torch.matmul(wf, xm, out=z))
    out["gemm gi"] = bench(lambda: torch.matmul(wg, g, out=gx))
    out["gemm gw"] = bench(lambda: torch.matmul(xm, g.transpose(1, 2)).sum(0))
    gw2 = torch.empty(ci, co * s ** 3, device="cuda")
    out["gemm gw flat"] = bench(lambda: torch.matmul(xm.permute(1, 0, 2).reshape(ci, n * P),
                                                     g.permute(0, 2, 1).reshape(n * P, co * s ** 3), out=gw2))
    yv = torch.empty(n, co, d * s, h * s, w * s, device="cuda")
    yview = yv.view(n, co, d, s, h, s, w, s)
    zview = z.view(n, co, s, s, s, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    out["shuffle z->y NCDHW"] = bench(lambda: yview.copy_(zview))
    gview = gy.view(n, co, d, s, h, s, w, s).permute(0, 1, 3, 5, 7, 2, 4, 6)
    gg = g.view(n, co, s, s, s, d, h, w)
    out["unshuffle gy->g NCDHW"] = bench(lambda: gg.copy_(gview))
    out["copy same bytes"] = bench(lambda: g.copy_(gy.view_as(g)))
    gcl = gy.contiguous(memory_format=torch.channels_last_3d)
    out["to CL gy"] = bench(lambda: gy.contiguous(memory_format=torch.channels_last_3d))
    del gcl
    flops = 2 * n * ci * co * s ** 3 * P
    return out, flops


def main():
    shapes = [(2, 64, 32, 32, 2), (2, 128, 64, 48, 2), (4, 64, 32, 48, 2)]
    for tf32 in (False, True):
        for sh in shapes:
            out, fl = layer(*sh, tf32)
            print(f"\n== N{sh[0]} {sh[1]}->{sh[2]} {sh[3]}^3 k=s={sh[4]} {'tf32' if tf32 else 'fp32'} "
                  f"({fl / 1e9:.2f} GFLOP per pass)")
            for k, v in out.items():
                tf = f"{fl / v / 1e9:7.1f} TFLOP/s" if k.startswith(("cudnn", "gemm")) else ""
                print(f"  {k:24s} {v * 1000:8.1f} us {tf}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
