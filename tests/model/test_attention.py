import torch

from model.attention import LocalAttention, band_mask, blocks_with_halo, gather_blocks_with_halo


def windowed_attention_reference(attention: LocalAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loop over queries: softmax over the valid keys within +-window//2 (and the query itself)."""
    batch, length, dim = x.shape
    heads, head_dim, halo = attention.heads, dim // attention.heads, attention.halo
    query, key, value = attention.qkv(x).split(dim, dim=-1)
    out = torch.zeros_like(x)
    for b in range(batch):
        for t in range(length):
            keys = [j for j in range(max(0, t - halo), min(length, t + halo + 1)) if mask[b, j] or j == t]
            q = query[b, t].reshape(heads, head_dim)
            k = key[b, keys].reshape(len(keys), heads, head_dim)
            v = value[b, keys].reshape(len(keys), heads, head_dim)
            weights = torch.softmax(torch.einsum("hd,khd->hk", q, k) / head_dim**0.5, dim=-1)
            out[b, t] = torch.einsum("hk,khd->hd", weights, v).reshape(dim)
    return attention.proj(out)


def test_band_mask_marks_the_window_of_each_query():
    band = band_mask(block=4, halo=2)
    assert band.shape == (4, 8)
    for query in range(4):
        visible = [j - 2 for j in range(8) if band[query, j]]
        assert visible == list(range(query - 2, query + 3))


def test_blocks_with_halo_match_slices_of_the_zero_padded_sequence():
    x = torch.arange(1, 13, dtype=torch.float32).reshape(1, 12, 1)
    padded = torch.cat([torch.zeros(1, 2, 1), x, torch.zeros(1, 2, 1)], dim=1)
    blocks = blocks_with_halo(x, block=4, halo=2)
    for b in range(3):
        assert torch.equal(blocks[0, b], padded[0, 4 * b : 4 * b + 8])
    gathered = gather_blocks_with_halo(x, torch.tensor([0, 0]), torch.tensor([2, 0]), block=4, halo=2)
    assert torch.equal(gathered[0], blocks[0, 2]) and torch.equal(gathered[1], blocks[0, 0])


def test_blockwise_attention_equals_per_query_window_loop():
    torch.manual_seed(0)
    attention = LocalAttention(dim=16, heads=2, window=7, block=8).eval()
    x = torch.randn(2, 29, 16)
    mask = torch.ones(2, 29, dtype=torch.bool)
    mask[1, 17:] = False
    with torch.no_grad():
        fast = attention(x, mask)
        slow = windowed_attention_reference(attention, x, mask)
    assert torch.allclose(fast[mask], slow[mask], atol=1e-5)


def test_attention_cost_is_linear_in_length():
    attention = LocalAttention(dim=8, heads=2, window=19, block=32)
    x = torch.randn(1, 4096, 8)
    mask = torch.ones(1, 4096, dtype=torch.bool)
    # A T x T score matrix would be 16.7M entries; blockwise there are 128 blocks of 32 x 50.
    blocks = blocks_with_halo(attention.qkv(x)[..., :8], 32, attention.halo)
    assert blocks.shape == (1, 128, 50, 8)
    assert attention(x, mask).shape == (1, 4096, 8)
