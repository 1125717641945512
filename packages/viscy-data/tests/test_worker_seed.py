import numpy as np
import pytest
import torch
from monai.transforms import Compose, Randomizable, RandScaleIntensityd
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from viscy_data.combined import ConcatDataModule
from viscy_data.hcs import HCSDataModule
from viscy_data.worker_seed import WorkerTransformSeeder, reseed_transforms

WORKER_SETTINGS = {"num_workers": 2, "batch_size": 2}


class Ones:
    """Deterministic test transform: every image becomes ones, so a scale factor f shows as 1 + f."""

    def __call__(self, sample):
        return {key: torch.ones_like(value) if key in ("Phase3D", "GFP") else value for key, value in sample.items()}


class TorchScaled(Randomizable):
    """Scales a key by 1 + U(0, 1) drawn from a torch generator seeded once at construction.

    Stands for ``viscy_transforms.TorchRandomizable`` (viscy-data does not import viscy-transforms).
    """

    def __init__(self, key):
        self.key = key
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed=seed, state=state)
        self.generator = torch.Generator().manual_seed(int(seed))
        return self

    def randomize(self, data=None):
        self.factor = float(torch.rand((), generator=self.generator))

    def __call__(self, sample):
        self.randomize()
        return {**sample, self.key: sample[self.key] * (1 + self.factor)}


AUGMENTATIONS = {
    "monai": lambda: RandScaleIntensityd(keys=["Phase3D"], factors=0.5, prob=1.0),
    "torch_generator": lambda: TorchScaled("Phase3D"),
}


@pytest.fixture(scope="module")
def small_plate(tmp_path_factory):
    from viscy_data.synthetic import write_synthetic_plate

    return write_synthetic_plate(
        tmp_path_factory.mktemp("seeding") / "plate.zarr",
        well_conditions={"A/1": "uninfected", "B/1": "infected"},
        fovs_per_well=3,
        n_frames=2,
        z_slices=3,
        seed=0,
    )


def _hcs(plate, augmentation, seed=0, **kwargs):
    settings = {"z_window_size": 3, "yx_patch_size": (8, 8), "split_ratio": 0.7, **WORKER_SETTINGS, **kwargs}
    return HCSDataModule(
        plate.store_path,
        "Phase3D",
        "GFP",
        normalizations=[Ones()],
        augmentations=[AUGMENTATIONS[augmentation]()],
        seed=seed,
        **settings,
    )


def _epoch_factors(loader):
    """The scale factor drawn for every training sample, batch by batch."""
    factors = []
    for batch in loader:
        source = batch["source"].flatten(1)
        torch.testing.assert_close(source, source[:, :1].expand_as(source))
        factors.append([round(float(value) - 1, 6) for value in source[:, 0]])
    return factors


def _two_epochs(module):
    module.setup("fit")
    loader = module.train_dataloader()
    return [_epoch_factors(loader) for _ in range(2)]


def _assert_new_draws_everywhere(epochs):
    draws = [factor for epoch in epochs for batch in epoch for factor in batch]
    assert len(epochs[0]) >= 4, "each of the 2 workers reads at least 2 batches"
    assert len(set(draws)) == len(draws), f"workers or epochs replayed draws: {epochs}"


@pytest.mark.parametrize("augmentation", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("persistent_workers", [False, True])
def test_workers_and_epochs_draw_new_augmentations_reproducibly(small_plate, augmentation, persistent_workers):
    """The reference replayed the same factors in both workers and in every epoch."""
    epochs = _two_epochs(_hcs(small_plate, augmentation, persistent_workers=persistent_workers))
    _assert_new_draws_everywhere(epochs)
    assert _two_epochs(_hcs(small_plate, augmentation, persistent_workers=persistent_workers)) == epochs
    other_seed = _two_epochs(_hcs(small_plate, augmentation, seed=1, persistent_workers=persistent_workers))
    assert other_seed[0] != epochs[0]


def test_concatenated_modules_reseed_every_child_dataset(small_plate):
    def concat():
        return ConcatDataModule([_hcs(small_plate, "torch_generator"), _hcs(small_plate, "monai")], seed=3)

    epochs = _two_epochs(concat())
    _assert_new_draws_everywhere(epochs)
    assert _two_epochs(concat()) == epochs


class InitialSeeds(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.initial_seed()


def test_torch_base_seed_changes_every_epoch_and_follows_the_generator():
    """What the reseeding relies on: each worker's ``torch.initial_seed()`` is new every epoch."""

    def epochs(seed):
        loader = DataLoader(
            InitialSeeds(), batch_size=2, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        return [sorted({int(s) for batch in loader for s in batch}) for _ in range(2)]

    first, second = epochs(0)
    assert len(first) == len(second) == 2
    assert set(first).isdisjoint(second)
    assert epochs(0) == [first, second]


def test_reseed_walks_wrapped_datasets_and_their_containers_once_per_transform():
    class Holder(Dataset):
        def __init__(self, transform, others):
            self.transform = transform
            self.twin = transform
            self.transforms = [transform, TorchScaled("b")]
            self.items = [(i, i) for i in range(1000)]
            self.others = others

        def __len__(self):
            return 1

    inner = Compose([TorchScaled("a")])
    dataset = ConcatDataset([Subset(Holder(inner, {"not": TorchScaled("c")}), [0]), Holder(TorchScaled("d"), [])])
    assert reseed_transforms(dataset, seed=5) == 5  # inner, each Holder's own "b", "c" and "d"
    draws = torch.rand(3, generator=inner.transforms[0].generator)
    reseed_transforms(dataset, seed=5)
    torch.testing.assert_close(torch.rand(3, generator=inner.transforms[0].generator), draws)


def test_seeder_outside_a_worker_fails_clearly():
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        WorkerTransformSeeder(rank=0)(0)


def test_ranks_get_different_streams(monkeypatch):
    scaled = TorchScaled("a")
    info = type("Info", (), {"dataset": Compose([scaled]), "id": 0})()
    monkeypatch.setattr("viscy_data.worker_seed.get_worker_info", lambda: info)
    draws = []
    for rank in (0, 1, 0):
        WorkerTransformSeeder(rank=rank)(0)
        draws.append(np.asarray(torch.rand(2, generator=scaled.generator)))
    assert not np.allclose(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], draws[2])
