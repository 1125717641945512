import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from viscy_data.distributed import ShardedDistributedSampler, sharded_data_loader


def _per_rank(n_items, replicas, epoch=0, **kwargs):
    ranks = []
    for rank in range(replicas):
        sampler = ShardedDistributedSampler(range(n_items), num_replicas=replicas, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        ranks.append(list(sampler))
    return ranks


@pytest.mark.parametrize(("n_items", "replicas"), [(10, 3), (12, 4), (7, 2), (2, 3), (100, 8)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_disjoint_complete_equal_length(n_items, replicas, shuffle):
    ranks = _per_rank(n_items, replicas, shuffle=shuffle)
    owned = [set(indices) for indices in ranks]
    assert set().union(*owned) == set(range(n_items))
    if n_items >= replicas:
        for i in range(replicas):
            for j in range(i + 1, replicas):
                assert not owned[i] & owned[j], "ranks share indices"
    lengths = {len(indices) for indices in ranks}
    assert lengths == {-(-n_items // replicas)}


def test_contiguous_stable_ownership_across_epochs():
    epochs = [_per_rank(103, 4, epoch=epoch, seed=7) for epoch in range(4)]
    for rank in range(4):
        shards = [set(epoch[rank]) for epoch in epochs]
        assert all(shard == shards[0] for shard in shards)
        assert max(shards[0]) - min(shards[0]) + 1 == len(shards[0])  # contiguous
    assert epochs[0][0] != epochs[1][0], "order inside a shard changes with the epoch"


def test_same_seed_same_order_other_seed_differs():
    assert _per_rank(50, 2, epoch=3, seed=1) == _per_rank(50, 2, epoch=3, seed=1)
    assert _per_rank(50, 2, epoch=3, seed=1) != _per_rank(50, 2, epoch=3, seed=2)


def test_drop_last_visits_every_index_over_epochs():
    seen = set()
    for epoch in range(30):
        ranks = _per_rank(10, 3, epoch=epoch, drop_last=True)
        assert [len(r) for r in ranks] == [3, 3, 3]
        seen.update(*map(set, ranks))
    assert seen == set(range(10))


def test_unshuffled_is_in_order():
    assert _per_rank(10, 3, shuffle=False) == [[0, 1, 2, 0], [3, 4, 5, 3], [6, 7, 8, 9]]


def _gloo_worker(rank, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        sampler = ShardedDistributedSampler(range(11), seed=3)
        sampler.set_epoch(2)
        mine = torch.tensor(list(sampler) + [-1] * (6 - sampler.num_samples))
        gathered = [torch.zeros_like(mine) for _ in range(2)]
        dist.all_gather(gathered, mine)
        if rank == 0:
            torch.save(gathered, result_file)
        loader = sharded_data_loader(range(11), batch_size=4, shuffle=True, seed=3, drop_last=False, collate_fn=list)
        assert isinstance(loader.sampler, ShardedDistributedSampler)
        torch.save([i for batch in loader for i in batch], f"{result_file}.loader{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks, which only Linux does safely")
def test_two_real_gloo_processes(tmp_path):
    result_file = tmp_path / "gathered.pt"
    mp.start_processes(
        _gloo_worker, args=(str(tmp_path / "init"), str(result_file)), nprocs=2, start_method="fork", join=True
    )
    gathered = [t.tolist() for t in torch.load(result_file)]
    assert gathered == _per_rank(11, 2, epoch=2, seed=3)
    assert set(gathered[0]).isdisjoint(gathered[1])
    assert set(gathered[0]) | set(gathered[1]) == set(range(11))
    loaded = [torch.load(f"{result_file}.loader{rank}") for rank in range(2)]
    assert loaded == _per_rank(11, 2, epoch=0, seed=3)


def test_data_loader_without_process_group_shuffles_with_its_seed():
    def order(seed):
        loader = sharded_data_loader(range(10), batch_size=3, shuffle=True, seed=seed, drop_last=False, collate_fn=list)
        assert not isinstance(loader.sampler, ShardedDistributedSampler)
        return [i for batch in loader for i in batch]

    assert sorted(order(5)) == list(range(10))
    assert order(5) == order(5)
    assert order(5) != order(6)
