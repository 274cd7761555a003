"""Under RPN2K_HUGE_PAGES=1, new large output blocks of the compiled CPU kernels are advised for
transparent huge pages before their first write (csrc/cpu/allocation.h: page faults, not the kernel,
dominated a 1M-node SpMM pass). The advice is given when the output cache creates a block, so each
test starts with an empty cache. The advice
is read back from the kernel's own record of the mapping (/proc/self/smaps VmFlags "hg"), so these
tests hold whether or not huge pages were actually available; the values are checked against the
reference beside it."""
import gc
import os
import sys

import pytest
import torch

from rpn2kernels import Graph, memory
from rpn2kernels import functional as F
from rpn2kernels.reference import expansion as expansion_reference

THRESHOLD_BYTES = 32 << 20  # kHugePageAdviceBytes

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/smaps"),
                       reason="huge-page advice is Linux-only"),
    # PyTorch's own allocator flag advises every allocation, which the "turned off" case would see.
    pytest.mark.skipif(os.environ.get("THP_MEM_ALLOC_ENABLE") == "1", reason="THP_MEM_ALLOC_ENABLE=1 is set"),
]


def advised_for_huge_pages(t: torch.Tensor) -> bool:
    """Whether the mapping that holds the middle of t's storage carries MADV_HUGEPAGE."""
    address = t.data_ptr() + t.numel() * t.element_size() // 2
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return "hg" in line.split()[1:]
    raise AssertionError(f"no mapping holds address {address:#x}")


def chain_graph(num_nodes: int) -> Graph:
    # i → i+1: output row i+1 is row i of x (column-normalised, in-degree 1).
    src = torch.arange(num_nodes - 1)
    return Graph.from_edge_index(torch.stack([src, src + 1]), num_nodes, normalization="column")


@pytest.fixture
def huge_pages_flag(monkeypatch):
    monkeypatch.delenv("RPN2K_OUTPUT_CACHE_MB", raising=False)
    gc.collect()  # an earlier test's output freed late would enter the cache after emptying it
    memory.empty_output_cache()  # a held block keeps the advice it was created with

    def set_flag(value):
        if value is None:
            monkeypatch.delenv("RPN2K_HUGE_PAGES", raising=False)
        else:
            monkeypatch.setenv("RPN2K_HUGE_PAGES", value)
    return set_flag


@pytest.mark.parametrize("flag, advised", [(None, False), ("1", True), ("0", False)])
def test_large_propagate_output_is_advised_when_turned_on(huge_pages_flag, flag, advised):
    huge_pages_flag(flag)
    N, feats = 140_000, 64  # 35.8 MB of float32 output
    x = torch.randn(N, feats)
    out = F.propagate(chain_graph(N), x, 1, backend="cpu")
    assert out.numel() * out.element_size() >= THRESHOLD_BYTES
    assert advised_for_huge_pages(out) is advised
    torch.testing.assert_close(out[1:], x[:-1], rtol=0, atol=0)
    assert torch.count_nonzero(out[0]) == 0


def test_small_output_is_not_advised(huge_pages_flag):
    huge_pages_flag("1")
    N, feats = 1000, 16
    out = F.propagate(chain_graph(N), torch.randn(N, feats), 1, backend="cpu")
    assert out.numel() * out.element_size() < THRESHOLD_BYTES
    # A small tensor shares its mapping with the allocator's other data, which nothing advised.
    assert not advised_for_huge_pages(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_pagerank_and_expansion_outputs_keep_their_values(huge_pages_flag, dtype):
    huge_pages_flag("1")
    N, feats = 70_000 if dtype == torch.float64 else 140_000, 64
    x = torch.randn(N, feats, dtype=dtype)
    G = chain_graph(N)
    out = F.pagerank(G, x, c=0.5, tol=1e-3, backend="cpu")
    expected = F.pagerank(G, x, c=0.5, tol=1e-3, backend="reference")
    assert advised_for_huge_pages(out)
    torch.testing.assert_close(out, expected)

    # κ(x) materialised: B × (m·degree) = 35.8 MB in float32.
    xb = torch.rand(4375 if dtype == torch.float64 else 8750, 256, dtype=dtype) * 2 - 1
    kappa = F.expand(xb, "chebyshev", 4, backend="cpu")
    assert advised_for_huge_pages(kappa)
    torch.testing.assert_close(kappa, expansion_reference.expand(xb, "chebyshev", 4, []))
