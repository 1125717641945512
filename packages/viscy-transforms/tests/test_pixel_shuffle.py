import torch

from viscy_transforms import BatchedRandLocalPixelShufflingd


def _coded(batch, z, y, x):
    """Every voxel of a sample holds a distinct value."""
    return torch.arange(float(z * y * x)).reshape(1, 1, z, y, x).expand(batch, 1, z, y, x).clone()


def _cells(volume: torch.Tensor, size: int) -> torch.Tensor:
    """(C, Z, Y, X) volume cut into patch cells: (cells, C, size**3)."""
    c, z, y, x = volume.shape
    cut = volume[:, : z // size * size, : y // size * size, : x // size * size]
    cut = cut.reshape(c, z // size, size, y // size, size, x // size, size)
    return cut.permute(1, 3, 5, 0, 2, 4, 6).reshape(-1, c, size**3)


def test_voxels_are_permuted_only_within_patches(device):
    data = _coded(8, 6, 9, 10).to(device)
    transform = BatchedRandLocalPixelShufflingd(keys="x", patch_size=3, shuffle_prob=0.5, prob=1.0)
    out = transform.set_random_state(seed=0)({"x": data})["x"]
    for before, after in zip(data, out, strict=True):
        cells_before, cells_after = _cells(before, 3), _cells(after, 3)
        torch.testing.assert_close(cells_before.sort(dim=-1).values, cells_after.sort(dim=-1).values)
        changed_cells = int((cells_before != cells_after).flatten(1).any(dim=1).sum())
        # min(int(0.5 * 540 / 27), 100) = 10 patches among 2 * 3 * 3 = 18 cells
        assert 8 <= changed_cells <= 10
        # the incomplete cells along X (voxel 9) never move
        assert torch.equal(before[..., 9], after[..., 9])


def test_channels_share_the_permutation_and_keys_share_the_patches():
    source = _coded(4, 4, 4, 4)
    target = torch.cat([source, source + 1000], dim=1)
    transform = BatchedRandLocalPixelShufflingd(keys=["source", "target"], patch_size=2, shuffle_prob=1.0, prob=1.0)
    out = transform({"source": source, "target": target})
    assert not torch.equal(out["source"], source)
    assert torch.equal(out["target"][:, :1], out["source"])
    assert torch.equal(out["target"][:, 1:], out["source"] + 1000)


def test_patch_count_is_capped_at_100():
    data = _coded(1, 2, 40, 40)
    transform = BatchedRandLocalPixelShufflingd(keys="x", patch_size=2, shuffle_prob=1.0, prob=1.0)
    out = transform({"x": data})["x"]
    changed_cells = int((_cells(data[0], 2) != _cells(out[0], 2)).flatten(1).any(dim=1).sum())
    assert 90 <= changed_cells <= 100


def test_volume_thinner_than_a_patch_is_unchanged():
    data = _coded(2, 2, 8, 8)
    out = BatchedRandLocalPixelShufflingd(keys="x", patch_size=3, shuffle_prob=1.0, prob=1.0)({"x": data})["x"]
    assert torch.equal(out, data)
