"""The compiled CPU kernels take outputs of 1 MiB or more from a cache of the blocks earlier outputs
freed (csrc/cpu/allocation.h, rpn2kernels.memory). A reused block holds the previous output's data,
so every test that reuses one checks the new values against the reference: a kernel that skipped an
element (an empty CSR row, a chain end) would show the stale value."""
import math

import pytest
import torch

from rpn2kernels import Graph, memory
from rpn2kernels import functional as F

CACHED_BYTES = 1 << 20  # kCachedOutputBytes


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv("RPN2K_OUTPUT_CACHE_MB", raising=False)
    memory.empty_output_cache()
    yield
    memory.empty_output_cache()


def path_graph(num_nodes: int) -> Graph:
    # i → i+1, column-normalised: row 0 has no in-edge, so its output must be written as zeros.
    src = torch.arange(num_nodes - 1)
    return Graph.from_edge_index(torch.stack([src, src + 1]), num_nodes, normalization="column")


def test_a_freed_output_block_is_reused_and_fully_overwritten():
    N, feats = 8192, 64  # 2 MiB of float32
    G = path_graph(N)
    first = F.propagate(G, torch.randn(N, feats), 1, backend="cpu")
    address = first.data_ptr()
    first.fill_(math.nan)  # what a skipped element would show after reuse
    del first
    held = memory.output_cache_info()
    assert held.free_blocks == 1 and held.free_bytes >= N * feats * 4

    x = torch.randn(N, feats)
    second = F.propagate(G, x, 1, backend="cpu")
    after = memory.output_cache_info()
    assert second.data_ptr() == address
    assert after.hits == held.hits + 1 and after.free_blocks == 0
    torch.testing.assert_close(second, F.propagate(G, x, 1, backend="reference"), rtol=0, atol=0)
    assert torch.count_nonzero(second[0]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_steps_reuse_blocks_and_keep_gradients(dtype):
    b, L, m = 4, 512, 160  # 1.25 MiB of float32 per output and gradient
    w = torch.randn(L, m, dtype=dtype)
    for step in range(3):
        x = torch.randn(b, L, m, dtype=dtype, requires_grad=True)
        x_ref = x.detach().clone().requires_grad_()
        (F.chain_propagate(x, "exponential_approx", bidirectional=True, backend="cpu") * w).sum().backward()
        (F.chain_propagate(x_ref, "exponential_approx", bidirectional=True, backend="reference") * w).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad)
    assert memory.output_cache_info().hits >= 2


def test_small_outputs_bypass_the_cache():
    before = memory.output_cache_info()
    out = F.propagate(path_graph(100), torch.randn(100, 8), 1, backend="cpu")
    assert out.numel() * out.element_size() < CACHED_BYTES
    del out
    after = memory.output_cache_info()
    assert (after.hits, after.misses, after.free_blocks) == (before.hits, before.misses, 0)


def test_cache_capacity_from_the_environment(monkeypatch):
    N, feats = 8192, 128  # 4 MiB
    G = path_graph(N)
    monkeypatch.setenv("RPN2K_OUTPUT_CACHE_MB", "0")  # off: outputs come from at::empty
    before = memory.output_cache_info()
    del_out = F.propagate(G, torch.randn(N, feats), 1, backend="cpu")
    del del_out
    assert memory.output_cache_info() == before

    monkeypatch.setenv("RPN2K_OUTPUT_CACHE_MB", "2")  # a 4 MiB block does not fit: freed at once
    out = F.propagate(G, torch.randn(N, feats), 1, backend="cpu")
    del out
    assert memory.output_cache_info().free_blocks == 0

    monkeypatch.setenv("RPN2K_OUTPUT_CACHE_MB", "9")  # two 4 MiB blocks fit, a third evicts the oldest
    outs = [F.propagate(G, torch.randn(N, feats), 1, backend="cpu") for _ in range(3)]
    del outs
    held = memory.output_cache_info()
    assert held.free_blocks == 2 and held.free_bytes <= 9 << 20


@pytest.mark.parametrize("value", ["lots", "-1", "1.5"])
def test_a_bad_cache_capacity_is_named(monkeypatch, value):
    monkeypatch.setenv("RPN2K_OUTPUT_CACHE_MB", value)
    with pytest.raises(RuntimeError, match=r"RPN2K_OUTPUT_CACHE_MB must be a whole number of MiB >= 0, got '"):
        F.propagate(path_graph(8192), torch.randn(8192, 64), 1, backend="cpu")


def test_a_cached_output_can_be_resized_and_emptied():
    N, feats = 8192, 64
    out = F.propagate(path_graph(N), torch.randn(N, feats), 1, backend="cpu")
    out.resize_(3 * N, feats)  # the storage grows through the cache's allocator
    out.fill_(2.0)
    assert out.sum().item() == 2.0 * 3 * N * feats
    del out
    assert memory.output_cache_info().free_blocks >= 1
    memory.empty_output_cache()
    assert memory.output_cache_info().free_blocks == 0
    assert memory.output_cache_info().free_bytes == 0


def test_a_capacity_made_invalid_after_allocation_frees_the_block(monkeypatch):
    out = F.propagate(path_graph(8192), torch.randn(8192, 64), 1, backend="cpu")
    monkeypatch.setenv("RPN2K_OUTPUT_CACHE_MB", "lots")
    del out  # the deleter cannot raise: it returns the block to the system instead
    assert memory.output_cache_info().free_blocks == 0


def test_threads_share_the_cache_safely():
    import threading

    N, feats = 8192, 64
    G = path_graph(N)
    inputs = [torch.randn(N, feats) for _ in range(4)]
    expected = [F.propagate(G, x, 1, backend="reference") for x in inputs]
    failures = []

    def work(k):
        for _ in range(10):
            out = F.propagate(G, inputs[k], 1, backend="cpu")
            if not torch.equal(out, expected[k]):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert memory.output_cache_info().hits > 0


def _child_propagates(queue):
    # One thread, as DataLoader workers run: a forked child's OpenMP pool hangs in any torch op
    # (x @ x.t() too) after the parent used it, with or without this cache.
    torch.set_num_threads(1)
    N, feats = 8192, 64
    x = torch.randn(N, feats)
    G = path_graph(N)
    hits_before = memory.output_cache_info().hits
    ok = all(torch.equal(F.propagate(G, x, 1, backend="cpu"), F.propagate(G, x, 1, backend="reference"))
             for _ in range(3))
    queue.put(ok and memory.output_cache_info().hits > hits_before)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_uses_its_copy_of_the_cache():
    import multiprocessing

    held = F.propagate(path_graph(8192), torch.randn(8192, 64), 1, backend="cpu")
    del held  # the child inherits a held block
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_propagates, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert queue.get(timeout=5) is True
