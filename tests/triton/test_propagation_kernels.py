"""Triton propagation kernels (rpn2kernels/triton/propagation.py) against the pure-PyTorch reference.

Without a GPU the kernels run under TRITON_INTERPRET=1 on CPU tensors (set here as well as in
conftest, before triton is imported); the interpreter costs ~0.2 ms per triton.language call, so
graphs are small and the half-precision tests, which the interpreter computes wrongly, run only on
a GPU.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

from rpn2kernels.reference import propagation as reference  # noqa: E402
from rpn2kernels.triton import propagation as kernels  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"

DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["fp32", "fp64"]
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def close(actual, expected, dtype, what=""):
    """rtol per dtype; atol scaled by the largest expected magnitude, as sums over edges and
    features lose absolute (not relative) accuracy to cancellation."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    rtol = RTOL[dtype]
    finite = expected[torch.isfinite(expected)]
    atol = rtol * (1.0 + (finite.abs().max().item() if finite.numel() else 0.0))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------
# Graphs: CSR (rowptr, col) with R rows (targets) and C columns (sources)
# ---------------------------------------------------------------------------------------------

def csr(rows_cols, C):
    rowptr = [0]
    col = []
    for cs in rows_cols:
        col += cs
        rowptr.append(len(col))
    return (torch.tensor(rowptr, dtype=torch.int64, device=DEVICE),
            torch.tensor(col, dtype=torch.int64, device=DEVICE), len(rows_cols), C)


def mixed_graph():
    """9 nodes: row 2 empty (but a source elsewhere), node 6 isolated (no row, no column), a
    duplicate edge (1→4 twice), a self-loop (3→3) and row 5 with 37 edges (more than one edge
    chunk at the default tile, duplicates included)."""
    g = torch.Generator().manual_seed(1)
    busy = [c for c in torch.randint(0, 9, (37,), generator=g).tolist() if c != 6]
    busy += [0] * (37 - len(busy))
    rows = [[1, 2], [4, 0, 4], [], [3, 8], [2], busy, [], [7, 5, 1, 0], [2, 3, 4]]
    return csr(rows, 9)


GRAPHS = {
    "mixed": mixed_graph,
    "no_edges": lambda: csr([[], [], [], []], 3),  # E = 0
    "single": lambda: csr([[0]], 1),  # one node with a self-loop
    "single_empty": lambda: csr([[]], 1),  # one node, no edge
    "rect": lambda: csr([[0, 1, 2], [4], [3, 3]], 5),  # R != C
}


def rand(*shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)


def attention_values(E, dtype, seed, masked_rows=(), rowptr=None):
    """Edge values with about a quarter exactly zero (masked), and every edge of masked_rows zero."""
    value = rand(E, dtype=dtype, seed=seed) + 0.1
    g = torch.Generator().manual_seed(seed + 1)
    value[(torch.rand(E, generator=g) < 0.25).to(DEVICE)] = 0.0
    for r in masked_rows:
        value[rowptr[r]:rowptr[r + 1]] = 0.0
    return value


# ---------------------------------------------------------------------------------------------
# spmm
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("F", [1, 7, 33])
@pytest.mark.parametrize("graph", ["mixed", "no_edges", "single", "rect"])
def test_spmm_matches_reference(graph, F, dtype):
    rowptr, col, R, C = GRAPHS[graph]()
    x = rand(C, F, dtype=dtype, seed=F)
    value = rand(col.numel(), dtype=dtype, seed=F + 1)
    base = rand(R, F, dtype=dtype, seed=F + 2)
    out = kernels.spmm(rowptr, col, value, x, base, 0.75, -1.5)
    assert out.is_contiguous()
    close(out, reference.spmm(rowptr, col, value, x, base, 0.75, -1.5), dtype, "spmm")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("with_value,with_base", [(False, False), (True, False), (False, True)],
                         ids=["plain", "value", "base"])
def test_spmm_optional_terms(with_value, with_base, dtype):
    rowptr, col, R, C = mixed_graph()
    F = 5
    x = rand(C, F, dtype=dtype, seed=3)
    value = rand(col.numel(), dtype=dtype, seed=4) if with_value else None
    base = rand(R, F, dtype=dtype, seed=5) if with_base else None
    alpha, beta = (1.0, 1.0) if not with_base else (-0.3, 2.5)
    out = kernels.spmm(rowptr, col, value, x, base, alpha, beta)
    close(out, reference.spmm(rowptr, col, value, x, base, alpha, beta), dtype, "spmm")


def test_spmm_float64_scalars_keep_full_precision():
    """alpha and beta reach the kernel in float64: a fp32 round trip would be off by ~1e-8."""
    rowptr, col, R, C = csr([[0], [1]], 2)
    x = torch.ones(2, 1, dtype=torch.float64, device=DEVICE)
    base = torch.ones(2, 1, dtype=torch.float64, device=DEVICE)
    alpha, beta = 0.1, 1.0 / 3.0
    out = kernels.spmm(rowptr, col, None, x, base, alpha, beta)
    assert torch.equal(out, torch.full((2, 1), alpha * 1.0 + beta * 1.0, dtype=torch.float64, device=DEVICE))


# ---------------------------------------------------------------------------------------------
# sddmm
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("F", [1, 7, 33])
@pytest.mark.parametrize("graph", ["mixed", "no_edges", "single", "rect"])
def test_sddmm_matches_reference(graph, F, dtype):
    rowptr, col, R, C = GRAPHS[graph]()
    a = rand(R, F, dtype=dtype, seed=10 + F)
    b = rand(C, F, dtype=dtype, seed=11 + F)
    out = kernels.sddmm(rowptr, col, a, b)
    close(out, reference.sddmm(rowptr, col, a, b), dtype, "sddmm")


# ---------------------------------------------------------------------------------------------
# edge attention
# ---------------------------------------------------------------------------------------------

def reference_attention(rowptr, col, value, q, k, v, scale, grad_out):
    """Forward, grad_q (autograd through the reference), and per-edge prob and grad_logit by
    autograd as well: the reference is re-run on an edge-expanded problem whose logits are a leaf
    tensor (one-hot q per edge, identity k, the logits as edge values, v gathered per edge), so
    grad_logit = ∂L/∂logit and prob = ∂(Σ out)/∂v' with v' = ones."""
    qr = q.detach().clone().requires_grad_(True)
    out, lse = reference.edge_attention(rowptr, col, value, qr, k, v, scale)
    out.backward(grad_out)
    rows = reference.csr_rows(rowptr)
    E, R = col.numel(), rowptr.numel() - 1
    logit = (q[rows] * k[col]).sum(1) * scale
    if value is not None:
        logit = logit * value
    edge = torch.arange(E, device=q.device)
    q1 = torch.zeros(R, E, dtype=q.dtype, device=q.device)
    q1[rows, edge] = 1.0
    k1 = torch.eye(E, dtype=q.dtype, device=q.device)
    w = logit.detach().clone().requires_grad_(True)
    out1, _ = reference.edge_attention(rowptr, edge, w, q1, k1, v[col], 1.0)
    out1.backward(grad_out)
    ones = torch.ones(E, 1, dtype=q.dtype, device=q.device, requires_grad=True)
    out2, _ = reference.edge_attention(rowptr, edge, logit.detach(), q1, k1, ones, 1.0)
    out2.sum().backward()
    torch.testing.assert_close(out1, out.detach())  # the expansion is the same attention
    return out.detach(), lse, qr.grad, w.grad, ones.grad[:, 0]


ATTENTION_CASES = [
    # (graph, Fq, Fv, valued, scale)
    ("mixed", 7, 33, True, 0.5),
    ("mixed", 33, 7, False, 0.3),
    ("mixed", 1, 1, True, 4.0),  # large logits: the online softmax rescales across edge chunks
    ("rect", 4, 3, True, 1.0),
    ("single", 2, 5, False, 1.0),
    ("no_edges", 3, 2, True, 1.0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("graph,Fq,Fv,valued,scale", ATTENTION_CASES,
                         ids=[f"{c[0]}-{c[1]}x{c[2]}-{'value' if c[3] else 'novalue'}" for c in ATTENTION_CASES])
def test_edge_attention_forward_and_backward(graph, Fq, Fv, valued, scale, dtype):
    rowptr, col, R, C = GRAPHS[graph]()
    E = col.numel()
    seed = Fq * 100 + Fv
    q = rand(R, Fq, dtype=dtype, seed=seed)
    k = rand(C, Fq, dtype=dtype, seed=seed + 1)
    v = rand(C, Fv, dtype=dtype, seed=seed + 2)
    grad_out = rand(R, Fv, dtype=dtype, seed=seed + 3)
    masked_rows = (8,) if graph == "mixed" else ()  # every edge of row 8 masked
    value = attention_values(E, dtype, seed + 4, masked_rows, rowptr.tolist()) if valued else None

    out, lse = kernels.edge_attention(rowptr, col, value, q, k, v, scale)
    out_ref, lse_ref, grad_q_ref, grad_logit_ref, prob_ref = reference_attention(
        rowptr, col, value, q, k, v, scale, grad_out)
    assert out.is_contiguous() and lse.dtype == reference.lse_dtype(dtype)
    close(out, out_ref, dtype, "out")
    close(lse, lse_ref, dtype, "lse")
    empty = torch.isinf(lse_ref)
    assert torch.equal(torch.isinf(lse), empty) and bool((lse[empty] < 0).all())
    assert not out[empty].any()
    if graph == "mixed":
        assert bool(empty[[2, 6]].all())  # empty rows
        if valued:
            assert bool(empty[8])  # the fully masked row

    grad_q, grad_logit, prob = kernels.edge_attention_backward(rowptr, col, value, q, k, v, out, lse, grad_out, scale)
    assert grad_q.dtype == dtype and grad_logit.dtype == dtype and prob.dtype == dtype
    close(grad_q, grad_q_ref, dtype, "grad_q")
    close(prob, prob_ref, dtype, "prob")
    close(grad_logit, grad_logit_ref, dtype, "grad_logit")
    if valued:
        masked = value == 0
        assert not prob[masked].any() and not grad_logit[masked].any()


def test_edge_attention_all_edges_masked():
    """scale = 0 masks every edge: out = 0, lse = -inf, zero gradients."""
    rowptr, col, R, C = GRAPHS["rect"]()
    q, k, v = rand(R, 3, dtype=torch.float64, seed=1), rand(C, 3, dtype=torch.float64, seed=2), \
        rand(C, 2, dtype=torch.float64, seed=3)
    out, lse = kernels.edge_attention(rowptr, col, None, q, k, v, 0.0)
    assert not out.any() and bool(torch.isneginf(lse).all())
    grad_q, grad_logit, prob = kernels.edge_attention_backward(rowptr, col, None, q, k, v, out, lse,
                                                               torch.ones_like(out), 0.0)
    assert not grad_q.any() and not grad_logit.any() and not prob.any()


# ---------------------------------------------------------------------------------------------
# chain filter and scan
# ---------------------------------------------------------------------------------------------

FILTERS = [
    # (taps, first_offset)
    ([0.5, -0.25, 0.125], 0),  # causal
    ([0.2, 0.0, 0.6, 0.2, -0.1], -2),  # centred, with a zero tap
    ([1.5, -2.0], 9),  # every shift ≥ L = 9: only the base term (or 0) remains
    ([0.3, 0.7], -10),  # every shift ≤ −L
    ([0.1] * 12 + [0.9, 0.4], -12),  # most taps out of range, a few reaching in
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("with_base", [False, True], ids=["nobase", "base"])
@pytest.mark.parametrize("taps,first_offset", FILTERS, ids=["causal", "centred", "past_end", "before_start", "wide"])
def test_chain_filter_matches_reference(taps, first_offset, with_base, dtype):
    x = rand(2, 9, 5, dtype=dtype, seed=len(taps))
    base = rand(2, 9, 5, dtype=dtype, seed=7) if with_base else None
    out = kernels.chain_filter(x, taps, first_offset, base, -0.7)
    close(out, reference.chain_filter(x, taps, first_offset, base, -0.7), dtype, "chain_filter")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 70, 1), (1, 4, 33)], ids=lambda s: "x".join(map(str, s)))
def test_chain_filter_shapes(shape, dtype):
    x = rand(*shape, dtype=dtype, seed=sum(shape))
    base = rand(*shape, dtype=dtype, seed=1)
    for taps, off in (([0.25, 0.5, 0.25], -1), ([2.0], 1)):
        close(kernels.chain_filter(x, taps, off, base, 1.0), reference.chain_filter(x, taps, off, base, 1.0),
              dtype, f"chain_filter {taps} {off}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["prefix", "suffix"])
@pytest.mark.parametrize("shape", [(2, 9, 5), (1, 1, 1), (2, 70, 3), (1, 5, 70)], ids=lambda s: "x".join(map(str, s)))
def test_chain_scan_matches_reference(shape, reverse, dtype):
    x = rand(*shape, dtype=dtype, seed=sum(shape))
    out = kernels.chain_scan(x, reverse)
    assert out.is_contiguous()
    close(out, reference.chain_scan(x, reverse), dtype, "chain_scan")


# ---------------------------------------------------------------------------------------------
# Layout, tiling, determinism, empty sizes, argument checks
# ---------------------------------------------------------------------------------------------

def test_non_contiguous_inputs():
    """Transposed and strided views go through .contiguous(); outputs are contiguous."""
    dtype = torch.float64
    rowptr, col, R, C = mixed_graph()
    E = col.numel()
    x = rand(7, C, dtype=dtype, seed=1).t()
    base = rand(7, R, dtype=dtype, seed=2).t()
    value = rand(2 * E, dtype=dtype, seed=3)[::2]
    col_nc = torch.stack([col, col], 1)[:, 0]
    assert not x.is_contiguous() and not base.is_contiguous() and not value.is_contiguous()
    assert not col_nc.is_contiguous()
    out = kernels.spmm(rowptr, col_nc, value, x, base, 2.0, 0.5)
    assert out.is_contiguous()
    close(out, reference.spmm(rowptr, col, value, x, base, 2.0, 0.5), dtype, "spmm")
    a = rand(7, R, dtype=dtype, seed=4).t()
    close(kernels.sddmm(rowptr, col_nc, a, x), reference.sddmm(rowptr, col, a, x), dtype, "sddmm")

    q = rand(4, R, dtype=dtype, seed=5).t()
    k = rand(4, C, dtype=dtype, seed=6).t()
    v = rand(3, C, dtype=dtype, seed=7).t()
    grad_out = rand(3, R, dtype=dtype, seed=8).t()
    out, lse = kernels.edge_attention(rowptr, col_nc, value, q, k, v, 0.5)
    out_ref, lse_ref, grad_q_ref, grad_logit_ref, prob_ref = reference_attention(
        rowptr, col, value, q, k, v, 0.5, grad_out)
    close(out, out_ref, dtype, "attention out")
    grad_q, grad_logit, prob = kernels.edge_attention_backward(rowptr, col_nc, value, q, k, v, out.t().contiguous().t(),
                                                               lse, grad_out, 0.5)
    close(grad_q, grad_q_ref, dtype, "grad_q")
    close(grad_logit, grad_logit_ref, dtype, "grad_logit")

    xc = rand(5, 9, 2, dtype=dtype, seed=9).permute(2, 1, 0)  # (2, 9, 5), strided
    bc = rand(2, 5, 9, dtype=dtype, seed=10).transpose(1, 2)
    assert not xc.is_contiguous() and not bc.is_contiguous()
    close(kernels.chain_filter(xc, [0.5, 0.5], -1, bc, 2.0), reference.chain_filter(xc, [0.5, 0.5], -1, bc, 2.0),
          dtype, "chain_filter")
    close(kernels.chain_scan(xc, True), reference.chain_scan(xc, True), dtype, "chain_scan")


@pytest.mark.skipif(not INTERPRET, reason="tile sizes are only overridable under the interpreter")
@pytest.mark.parametrize("block_r", [1, 4, 16], ids=lambda b: f"BR{b}")
def test_small_tiles_several_chunks_and_determinism(block_r, monkeypatch):
    """Minimum tiles, so rows span several edge steps (row 5: 37 edges in steps of 8) and every
    width several feature tiles/chunks (ragged ends), with row blocks of 1 row, of 4 rows (fewer
    than R = 9, uneven degrees within a block: 2, 3, 0, 2 then 1, 37, 0, 4 — and a last block of
    one row and three past R) and of 16 rows (all rows in one block); chain tiles span several
    chains.
    The filter's 6 taps go 1 a step (as on a GPU), 4 (a ragged second step) or all at once.
    Results must equal the reference and be bitwise reproducible."""
    monkeypatch.setattr(kernels, "_INTERPRET_BLOCKS",
                        dict(BR=64, BE=8, BF=4, BL=4, BM=2, BT=block_r, TILE=1 << 16))
    monkeypatch.setattr(kernels, "_FORCE_BLOCK_R", block_r)
    dtype = torch.float64
    rowptr, col, R, C = mixed_graph()
    E = col.numel()
    assert kernels._csr_blocks(rowptr, E, 4, dtype) == (block_r, 8)
    x = rand(C, 9, dtype=dtype, seed=1)
    base = rand(R, 9, dtype=dtype, seed=2)
    value = attention_values(E, dtype, 3, (8,), rowptr.tolist())
    runs = []
    for _ in range(2):
        res = {"spmm": kernels.spmm(rowptr, col, value, x, base, 0.5, 2.0),
               "sddmm": kernels.sddmm(rowptr, col, base, x)}
        q, k, v = rand(R, 6, dtype=dtype, seed=4), rand(C, 6, dtype=dtype, seed=5), x
        res["out"], res["lse"] = kernels.edge_attention(rowptr, col, value, q, k, v, 0.8)
        res["grad_q"], res["grad_logit"], res["prob"] = kernels.edge_attention_backward(
            rowptr, col, value, q, k, v, res["out"], res["lse"], base, 0.8)
        xc = rand(2, 9, 3, dtype=dtype, seed=6)
        res["filter"] = kernels.chain_filter(xc, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], -3, None, 1.0)
        res["scan"] = kernels.chain_scan(xc, False)
        res["rscan"] = kernels.chain_scan(xc, True)
        runs.append(res)
    close(runs[0]["spmm"], reference.spmm(rowptr, col, value, x, base, 0.5, 2.0), dtype, "spmm")
    close(runs[0]["sddmm"], reference.sddmm(rowptr, col, base, x), dtype, "sddmm")
    out_ref, lse_ref, grad_q_ref, grad_logit_ref, prob_ref = reference_attention(
        rowptr, col, value, q, k, v, 0.8, base)
    close(runs[0]["out"], out_ref, dtype, "out")
    close(runs[0]["lse"], lse_ref, dtype, "lse")
    assert bool(torch.isneginf(runs[0]["lse"][[2, 6, 8]]).all())  # empty and fully masked rows
    close(runs[0]["grad_q"], grad_q_ref, dtype, "grad_q")
    close(runs[0]["grad_logit"], grad_logit_ref, dtype, "grad_logit")
    close(runs[0]["prob"], prob_ref, dtype, "prob")
    close(runs[0]["filter"], reference.chain_filter(xc, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], -3), dtype, "filter")
    close(runs[0]["scan"], reference.chain_scan(xc, False), dtype, "scan")
    close(runs[0]["rscan"], reference.chain_scan(xc, True), dtype, "reverse scan")
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), f"{name} is not bitwise reproducible"


def test_row_block_does_not_change_results(monkeypatch):
    """The row block only decides which rows share a program: with the same edge and feature
    tiles, every row's arithmetic (lanes, order of the sums) is the same, so results equal those
    of one row a program — bitwise under the interpreter; on a GPU the reduction tree over the
    lanes follows the register layout (BR and num_warps), so to rounding. Here on a
    power-law-like graph (hubs next to rows of degree 0 and 1, in blocks of every phase)."""
    g = torch.Generator().manual_seed(5)
    deg = [0, 1, 23, 1, 0, 2, 1, 40, 1, 0, 3, 1, 1, 17]
    rows = [torch.randint(0, 11, (d,), generator=g).tolist() for d in deg]
    rowptr, col, R, C = csr(rows, 11)
    E = col.numel()
    dtype = torch.float64
    x = rand(C, 5, dtype=dtype, seed=1)
    base = rand(R, 5, dtype=dtype, seed=2)
    value = attention_values(E, dtype, 3, (), rowptr.tolist())
    q, k = rand(R, 3, dtype=dtype, seed=4), rand(C, 3, dtype=dtype, seed=5)

    def run(br):
        monkeypatch.setattr(kernels, "_FORCE_BLOCK_R", br)
        out, lse = kernels.edge_attention(rowptr, col, value, q, k, x, 0.7)
        return [kernels.spmm(rowptr, col, value, x, base, 1.5, -0.5), kernels.sddmm(rowptr, col, q, k), out, lse,
                *kernels.edge_attention_backward(rowptr, col, value, q, k, x, out, lse, base, 0.7)]

    ones = run(1)
    close(ones[0], reference.spmm(rowptr, col, value, x, base, 1.5, -0.5), dtype, "spmm")
    close(ones[2], reference.edge_attention(rowptr, col, value, q, k, x, 0.7)[0], dtype, "attention out")
    names = ["spmm", "sddmm", "out", "lse", "grad_q", "grad_logit", "prob"]
    for br in (4, 16):  # blocks straddling the hubs; all rows in one block
        for name, a, b in zip(names, ones, run(br)):
            if INTERPRET:
                assert torch.equal(a, b), f"{name} differs between BR=1 and BR={br}"
            else:
                close(b, a, dtype, f"{name} with BR={br}")


def test_row_blocks_beyond_grid_limit(monkeypatch):
    """A grid over the axis-0 limit: each program walks several row blocks (CSR kernels); the
    chain kernels refuse such a launch."""
    monkeypatch.setattr(kernels, "_MAX_GRID", 2)
    monkeypatch.setattr(kernels, "_FORCE_BLOCK_R", 2)
    dtype = torch.float64
    rowptr, col, R, C = mixed_graph()
    E = col.numel()
    assert kernels._row_grid(R, 2, 1) == (5, 3, 2)
    x = rand(C, 4, dtype=dtype, seed=1)
    base = rand(R, 4, dtype=dtype, seed=2)
    value = attention_values(E, dtype, 3, (8,), rowptr.tolist())
    close(kernels.spmm(rowptr, col, value, x, base, 0.5, 2.0), reference.spmm(rowptr, col, value, x, base, 0.5, 2.0),
          dtype, "spmm")
    close(kernels.sddmm(rowptr, col, base, x), reference.sddmm(rowptr, col, base, x), dtype, "sddmm")
    q, k = rand(R, 3, dtype=dtype, seed=4), rand(C, 3, dtype=dtype, seed=5)
    out, lse = kernels.edge_attention(rowptr, col, value, q, k, x, 0.8)
    out_ref, lse_ref, grad_q_ref, grad_logit_ref, prob_ref = reference_attention(
        rowptr, col, value, q, k, x, 0.8, base)
    close(out, out_ref, dtype, "out")
    close(lse, lse_ref, dtype, "lse")
    grad_q, grad_logit, prob = kernels.edge_attention_backward(rowptr, col, value, q, k, x, out, lse, base, 0.8)
    close(grad_q, grad_q_ref, dtype, "grad_q")
    close(grad_logit, grad_logit_ref, dtype, "grad_logit")
    close(prob, prob_ref, dtype, "prob")
    with pytest.raises(ValueError, match="exceed the grid limit"):
        kernels.chain_scan(rand(3, 4, 70, dtype=dtype, seed=6), False)


def test_determinism_default_tiles():
    dtype = torch.float32
    rowptr, col, R, C = mixed_graph()
    x = rand(C, 33, dtype=dtype, seed=1)
    value = rand(col.numel(), dtype=dtype, seed=2)
    q, k = rand(R, 7, dtype=dtype, seed=3), rand(C, 7, dtype=dtype, seed=4)
    first = [kernels.spmm(rowptr, col, value, x, None, 1.0, 1.0), kernels.sddmm(rowptr, col, q, k),
             *kernels.edge_attention(rowptr, col, value, q, k, x, 0.5)]
    first += list(kernels.edge_attention_backward(rowptr, col, value, q, k, x, first[2], first[3],
                                                  rand(R, 33, dtype=dtype, seed=5), 0.5))
    second = [kernels.spmm(rowptr, col, value, x, None, 1.0, 1.0), kernels.sddmm(rowptr, col, q, k),
              *kernels.edge_attention(rowptr, col, value, q, k, x, 0.5)]
    second += list(kernels.edge_attention_backward(rowptr, col, value, q, k, x, second[2], second[3],
                                                   rand(R, 33, dtype=dtype, seed=5), 0.5))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_empty_sizes():
    dtype = torch.float32
    empty_rowptr = torch.zeros(1, dtype=torch.int64, device=DEVICE)
    empty_col = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    # R = 0
    x = rand(3, 4, dtype=dtype, seed=1)
    assert kernels.spmm(empty_rowptr, empty_col, None, x, None, 1.0, 1.0).shape == (0, 4)
    assert kernels.sddmm(empty_rowptr, empty_col, x[:0], x).shape == (0,)
    out, lse = kernels.edge_attention(empty_rowptr, empty_col, None, x[:0], x, x, 1.0)
    assert out.shape == (0, 4) and lse.shape == (0,)
    grads = kernels.edge_attention_backward(empty_rowptr, empty_col, None, x[:0], x, x, out, lse, out, 1.0)
    assert [tuple(g.shape) for g in grads] == [(0, 4), (0,), (0,)]
    # F = 0 with edges
    rowptr, col, R, C = GRAPHS["rect"]()
    z = torch.zeros(C, 0, dtype=dtype, device=DEVICE)
    assert kernels.spmm(rowptr, col, None, z, torch.zeros(R, 0, dtype=dtype, device=DEVICE), 1.0, 1.0).shape == (R, 0)
    assert not kernels.sddmm(rowptr, col, torch.zeros(R, 0, dtype=dtype, device=DEVICE), z).any()
    # attention with Fv = 0 still has lse; with Fq = 0 every logit is 0, so every edge is masked
    q, k = rand(R, 2, dtype=dtype, seed=2), rand(C, 2, dtype=dtype, seed=3)
    out, lse = kernels.edge_attention(rowptr, col, None, q, k, z, 1.0)
    close(lse, reference.edge_attention(rowptr, col, None, q, k, z, 1.0)[1], dtype, "lse with Fv = 0")
    q0, k0 = q[:, :0], k[:, :0]
    v = rand(C, 3, dtype=dtype, seed=4)
    out, lse = kernels.edge_attention(rowptr, col, None, q0, k0, v, 1.0)
    assert not out.any() and bool(torch.isneginf(lse).all())
    grad_q, grad_logit, prob = kernels.edge_attention_backward(rowptr, col, None, q0, k0, v, out, lse,
                                                               torch.ones_like(out), 1.0)
    assert grad_q.shape == (R, 0) and not grad_logit.any() and not prob.any()
    # E = 0: base term only
    rowptr, col, R, C = GRAPHS["no_edges"]()
    base = rand(R, 2, dtype=dtype, seed=5)
    close(kernels.spmm(rowptr, col, None, torch.zeros(C, 2, dtype=dtype, device=DEVICE), base, 3.0, 0.5),
          0.5 * base, dtype, "spmm E=0")
    # chains with b = 0, L = 0, m = 0
    for shape in ((0, 4, 2), (2, 0, 3), (2, 4, 0)):
        xc = torch.zeros(shape, dtype=dtype, device=DEVICE)
        assert kernels.chain_filter(xc, [1.0, 2.0], -1, None, 1.0).shape == shape
        assert kernels.chain_scan(xc, True).shape == shape


def test_rejects_bad_arguments():
    rowptr, col, R, C = GRAPHS["rect"]()
    x = rand(C, 3, dtype=torch.float32, seed=1)
    with pytest.raises(TypeError, match="rowptr.*int64"):
        kernels.spmm(rowptr.to(torch.int32), col, None, x, None, 1.0, 1.0)
    with pytest.raises(TypeError, match="col.*int64"):
        kernels.sddmm(rowptr, col.to(torch.int32), rand(R, 3, dtype=torch.float32, seed=2), x)
    with pytest.raises(ValueError, match="col must have 1 dim"):
        kernels.spmm(rowptr, col[None], None, x, None, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"value must have shape \(6,\)"):
        kernels.spmm(rowptr, col, torch.ones(4, device=DEVICE), x, None, 1.0, 1.0)
    with pytest.raises(TypeError, match="value must have x's dtype torch.float32, got torch.float64"):
        kernels.spmm(rowptr, col, torch.ones(5, dtype=torch.float64, device=DEVICE), x, None, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"base must have shape \(3, 3\), got \(3, 2\)"):
        kernels.spmm(rowptr, col, None, x, torch.ones(3, 2, device=DEVICE), 1.0, 1.0)
    with pytest.raises(ValueError, match="x must have 2 dims"):
        kernels.spmm(rowptr, col, None, x[0], None, 1.0, 1.0)
    with pytest.raises(TypeError, match="x must be a float32"):
        kernels.spmm(rowptr, col, None, x.to(torch.int32), None, 1.0, 1.0)
    with pytest.raises(ValueError, match="col must be on x's device"):
        kernels.spmm(rowptr, col.to("meta"), None, x, None, 1.0, 1.0)
    with pytest.raises(ValueError, match="a must have R=3 rows"):
        kernels.sddmm(rowptr, col, x, x)
    with pytest.raises(ValueError, match="b must have a's width 3"):
        kernels.sddmm(rowptr, col, x[:R], x[:, :2])
    q = rand(R, 3, dtype=torch.float32, seed=3)
    with pytest.raises(ValueError, match="q must have R=3 rows"):
        kernels.edge_attention(rowptr, col, None, x, x, x, 1.0)
    with pytest.raises(ValueError, match="k must have q's width 3"):
        kernels.edge_attention(rowptr, col, None, q, x[:, :2], x, 1.0)
    with pytest.raises(ValueError, match="v must have k's 5 rows"):
        kernels.edge_attention(rowptr, col, None, q, x, x[:4], 1.0)
    with pytest.raises(TypeError, match="v must have q's dtype"):
        kernels.edge_attention(rowptr, col, None, q, x, x.double(), 1.0)
    out, lse = kernels.edge_attention(rowptr, col, None, q, x, x, 1.0)
    with pytest.raises(ValueError, match=r"lse must have shape \(3,\)"):
        kernels.edge_attention_backward(rowptr, col, None, q, x, x, out, lse[:2], out, 1.0)
    with pytest.raises(ValueError, match=r"grad_out must have shape \(3, 3\)"):
        kernels.edge_attention_backward(rowptr, col, None, q, x, x, out, lse, out[:, :2], 1.0)
    xc = rand(2, 4, 3, dtype=torch.float32, seed=4)
    with pytest.raises(ValueError, match="taps must hold at least one value"):
        kernels.chain_filter(xc, [], 0, None, 1.0)
    with pytest.raises(ValueError, match="x must have 3 dims"):
        kernels.chain_scan(xc[0], False)
    with pytest.raises(ValueError, match=r"base must have shape \(2, 4, 3\)"):
        kernels.chain_filter(xc, [1.0], 0, xc[:, :2], 1.0)


@pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(),
                    reason="the interpreter computes half-precision arithmetic wrongly; GPU only")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_on_gpu(dtype):
    """fp32 accumulation: the error is that of rounding operands (and the output) to half."""
    g = torch.Generator().manual_seed(11)
    R = C = 300
    deg = torch.randint(0, 40, (R,), generator=g)
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64), deg.cumsum(0)]).to(DEVICE)
    col = torch.randint(0, C, (int(deg.sum()),), generator=g).to(DEVICE)
    E = col.numel()
    tol = 1e-2 if dtype == torch.float16 else 4e-2

    def check(got, want, what):
        assert got.dtype == (torch.float32 if what == "lse" else dtype), what
        scale = want[torch.isfinite(want)].abs().max().item() + 1.0
        assert (got.double() - want.double()).abs().nan_to_num(0.0).max().item() <= tol * scale, what

    x64, v64 = torch.randn(C, 70, generator=g, dtype=torch.float64), torch.randn(E, generator=g, dtype=torch.float64)
    b64 = torch.randn(R, 70, generator=g, dtype=torch.float64)
    x, val, base = (t.to(DEVICE, dtype) for t in (x64, v64, b64))
    check(kernels.spmm(rowptr, col, val, x, base, 0.5, 2.0),
          reference.spmm(rowptr, col, val.double(), x.double(), base.double(), 0.5, 2.0).to(dtype), "spmm")
    check(kernels.sddmm(rowptr, col, base, x), reference.sddmm(rowptr, col, base.double(), x.double()), "sddmm")
    q, k, v = (torch.randn(n, 40, generator=g, dtype=torch.float64).to(DEVICE, dtype) for n in (R, C, C))
    out, lse = kernels.edge_attention(rowptr, col, val, q, k, v, 0.2)
    out_ref, lse_ref = reference.edge_attention(rowptr, col, val.double(), q.double(), k.double(), v.double(), 0.2)
    check(out, out_ref, "attention out")
    check(lse, lse_ref, "lse")
    xc = torch.randn(3, 200, 17, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    check(kernels.chain_filter(xc, [0.25, 0.5, 0.25], -1, None, 1.0),
          reference.chain_filter(xc.double(), [0.25, 0.5, 0.25], -1), "chain_filter")
    check(kernels.chain_scan(xc, True), reference.chain_scan(xc.double(), True), "chain_scan")
