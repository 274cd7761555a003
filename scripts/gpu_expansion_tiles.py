"""Times expand_linear on a CUDA device: the Triton kernels under several tile configurations, the
CUDA C++ backend, the materialise-then-F.linear peer and the bare GEMMs, forward and backward apart.
Used to choose ``_GPU_BLOCKS`` in rpn2kernels/triton/expansion.py and the per-op CUDA default
(run by scripts/gpu_session.sh; prints a table, writes JSON to $OUT).

    python scripts/gpu_expansion_tiles.py [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
import triton.testing

import rpn2kernels.functional as R
from rpn2kernels.reference import expansion as reference
from rpn2kernels.triton import expansion as tx

SHAPES = [  # (label, basis, degree, B, m, n, dtype)
    ("E1 cheb3 fp32", "chebyshev", 3, 4096, 256, 256, torch.float32),
    ("E1 cheb3 bf16", "chebyshev", 3, 4096, 256, 256, torch.bfloat16),
    ("cheb3 fp32 B32k", "chebyshev", 3, 32768, 512, 512, torch.float32),
    ("cheb3 bf16 B32k", "chebyshev", 3, 32768, 512, 512, torch.bfloat16),
    ("E2 taylor2 fp32", "taylor", 2, 64, 784, 64, torch.float32),
]
FWD = [(64, 64, 32, 4), (128, 64, 32, 4), (128, 128, 32, 8), (64, 128, 32, 4), (128, 64, 16, 4),
       (64, 64, 16, 4), (128, 128, 16, 8)]
DX = [(64, 16, 32, 8), (64, 32, 32, 4), (128, 32, 32, 8), (64, 64, 32, 8), (128, 64, 32, 8), (64, 32, 64, 8)]
DW = [(32, 32, 32, 4), (64, 64, 32, 4), (32, 64, 64, 4), (64, 128, 32, 8), (128, 64, 64, 8), (64, 64, 64, 4)]


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for label, basis, degree, B, m, n, dtype in SHAPES:
        g = torch.Generator().manual_seed(0)
        D = m * degree if basis != "taylor" else m + m * m
        x = (torch.rand(B, m, generator=g) * 2 - 1).to(dev, dtype)
        w = (torch.randn(n, D, generator=g) / D ** 0.5).to(dev, dtype)
        gy = torch.randn(B, n, generator=g).to(dev, dtype)
        flop = 2 * B * D * n
        ref_y = reference.expand_linear(x.double(), w.double(), None, basis, degree, [])
        key = "fp64" if dtype == torch.float64 else "fp32" if dtype == torch.float32 else "half"
        saved = {r: tx._GPU_BLOCKS[key][r] for r in ("fwd", "dx", "dw")}

        def record(impl, role, ms, flops):
            rows.append(dict(shape=label, impl=impl, role=role, ms=ms, tflops=flops / ms / 1e9))
            print(f"{label:18s} {impl:28s} {role:4s} {ms:8.3f} ms {flops / ms / 1e9:8.1f} TFLOP/s", flush=True)

        # baselines
        feats = reference.expand(x, basis, degree, [])
        record("floor F.linear", "fwd", bench(lambda: F.linear(feats, w)), flop)
        record("floor dX+dW", "bwd", bench(lambda: (gy @ w, gy.t() @ feats)), 2 * flop)
        record("peer materialise+linear", "fwd", bench(lambda: F.linear(reference.expand(x, basis, degree, []), w)),
               flop)
        for backend in ("cuda", "triton"):
            try:
                y = R.expand_linear(x, w, None, basis, degree, backend=backend)
                err = ((y.double() - ref_y).norm() / ref_y.norm()).item()
                record(f"{backend} default (err {err:.1e})", "fwd",
                       bench(lambda: R.expand_linear(x, w, None, basis, degree, backend=backend)), flop)
                xg = x.clone().requires_grad_()
                wg = w.clone().requires_grad_()
                yg = R.expand_linear(xg, wg, None, basis, degree, backend=backend)
                record(f"{backend} default", "bwd", bench(lambda: torch.autograd.grad(yg, (xg, wg), gy,
                                                                                        retain_graph=True)),
                       2 * flop)
            except Exception as error:  # a refused backend is a row, not a crash
                print(f"{label:18s} {backend}: {type(error).__name__}: {str(error)[:200]}")
        if basis == "taylor":
            continue
        for role, configs in (("fwd", FWD), ("dx", DX), ("dw", DW)):
            for cfg in configs:
                tx._GPU_BLOCKS[key] = dict(saved, **{role: cfg})
                try:
                    if role == "fwd":
                        y = tx.expand_linear_forward(x, w, None, basis, degree, [])
                        err = ((y.double() - ref_y).norm() / ref_y.norm()).item()
                        ms = bench(lambda: tx.expand_linear_forward(x, w, None, basis, degree, []))
                        record(f"triton {role} {cfg} e{err:.0e}", role, ms, flop)
                    else:
                        ms = bench(lambda: tx.expand_linear_backward(gy, x, w, basis, degree, []))
                        record(f"triton bwd[{role}={cfg}]", "bwd", ms, 2 * flop)
                except Exception as error:
                    print(f"{label:18s} {role} {cfg}: {type(error).__name__}: {str(error)[:160]}")
            tx._GPU_BLOCKS[key] = dict(saved)
    with open(os.path.join(args.out, "expansion_tiles.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(dev), torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
