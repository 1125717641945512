import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from monai.transforms import Compose, Randomizable, RandScaleIntensityd
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from viscy_data.combined import ConcatDataModule
from viscy_data.hcs import HCSDataModule
from viscy_data.seeding import WorkerTransformSeeder, seed_transforms

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
    assert seed_transforms(dataset, 5, 0, 0, 0) == 5  # inner, each Holder's own "b", "c" and "d"
    draws = torch.rand(3, generator=inner.transforms[0].generator)
    seed_transforms(dataset, 5, 0, 0, 0)
    torch.testing.assert_close(torch.rand(3, generator=inner.transforms[0].generator), draws)


def test_seeder_outside_a_worker_fails_clearly():
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        WorkerTransformSeeder(rank=0)(0)


def test_ranks_get_different_streams(monkeypatch):
    scaled = TorchScaled("a")
    info = type("Info", (), {"dataset": Compose([scaled]), "id": 0})()
    monkeypatch.setattr("viscy_data.seeding.get_worker_info", lambda: info)
    draws = []
    for rank in (0, 1, 0):
        WorkerTransformSeeder(rank=rank)(0)
        draws.append(np.asarray(torch.rand(2, generator=scaled.generator)))
    assert not np.allclose(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], draws[2])


# ---------------------------------------------------------------- one seed per batch


def _draws(transforms, *key, validation=False):
    seed_transforms(transforms, *key, validation=validation)
    return [np.asarray(torch.rand(4, generator=transform.generator)) for transform in transforms]


def test_batch_draws_depend_on_seed_epoch_rank_and_position_only():
    transforms = [TorchScaled("a"), TorchScaled("b")]
    first = _draws(transforms, 3, 1, 0, 5)
    assert not np.array_equal(first[0], first[1]), "each transform gets its own seed"
    torch.manual_seed(123)  # global generators play no part
    np.testing.assert_array_equal(_draws([TorchScaled("a"), TorchScaled("b")], 3, 1, 0, 5), first)
    others = [(4, 1, 0, 5), (3, 2, 0, 5), (3, 1, 1, 5), (3, 1, 0, 6)]  # other seed, epoch, rank, position
    for key in others:
        assert not np.array_equal(_draws(transforms, *key)[0], first[0]), key
    assert not np.array_equal(_draws(transforms, 3, 1, 0, 5, validation=True)[0], first[0])


def test_batch_seeds_are_the_seed_sequence_words_in_the_order_found():
    """The scheme itself: the n-th random transform gets word n of SeedSequence((seed, epoch, rank, position))."""
    plain, first, second = (lambda sample: sample), TorchScaled("a"), TorchScaled("b")
    assert seed_transforms([first, plain, second, first], 7, 2, 1, 9) == 2
    words = np.random.SeedSequence((7, 2, 1, 9)).generate_state(2)
    for transform, word in zip((first, second), words, strict=True):
        expected = torch.rand(3, generator=torch.Generator().manual_seed(int(word)))
        torch.testing.assert_close(torch.rand(3, generator=transform.generator), expected, rtol=0, atol=0)


# ---------------------------------------------------------------- resumed runs augment as uninterrupted ones


def _zeros(keys):
    """Normalization stand-in: every image becomes zeros, so an augmented batch holds only the augmentation's draws."""

    def zeros(sample):
        return {key: torch.zeros_like(value) if key in keys else value for key, value in sample.items()}

    return zeros


class _Probe(LightningModule):
    """One weight trained on the batches' mean, so that optimizer steps and checkpoints are real."""

    def __init__(self, keys):
        super().__init__()
        self.keys = keys
        self.weight = nn.Parameter(torch.ones(()))

    def training_step(self, batch, batch_idx):
        return self.weight * sum(batch[key].float().mean() for key in self.keys)

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Record(Callback):
    """Per training (and validation) step, the batch it received after transfer."""

    def __init__(self, keys):
        self.keys = keys
        self.train, self.val = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append([batch[key].clone() for key in self.keys])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append([batch[key].clone() for key in self.keys])


def _trainer(root, callbacks, **kwargs):
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": root,
    }
    return Trainer(**{**settings, **kwargs}, callbacks=callbacks)


def _triplet(plate):
    from monai.transforms import RandGaussianNoised

    from viscy_data.triplet import TripletDataModule

    channels = ["Phase3D", "GFP"]
    return TripletDataModule(
        plate.store_path,
        plate.tracks_path,
        channels,
        z_range=(1, 6),
        initial_yx_patch_size=(32, 32),
        final_yx_patch_size=(24, 24),
        batch_size=8,
        num_workers=0,
        split_ratio=0.5,
        time_interval=1,
        return_negative=False,
        normalizations=[_zeros(channels)],
        augmentations=[RandGaussianNoised(keys=channels, prob=1.0, std=1.0)],
        seed=2,
    )


def _cached_gpu(plate):
    from monai.transforms import RandGaussianNoised

    from viscy_data.gpu_aug import CachedOmeZarrDataModule

    channels = ["Phase3D", "GFP"]
    return CachedOmeZarrDataModule(
        plate.store_path,
        channels=channels,
        batch_size=4,
        num_workers=0,
        split_ratio=0.75,
        train_cpu_transforms=[],
        val_cpu_transforms=[],
        train_gpu_transforms=[_zeros(channels), RandGaussianNoised(keys=channels, prob=1.0, std=1.0)],
        val_gpu_transforms=[],
        seed=2,
    )


MODULES = {
    "triplet": (_triplet, "tracking_plate", ["anchor", "positive"], 1),
    "cached_gpu": (_cached_gpu, "synthetic_plate", ["Phase3D", "GFP"], 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_run_resumed_mid_epoch_augments_as_the_uninterrupted_run(name, request, tmp_path):
    """The draws of each step, and of the validation after it, match; the modules had restarted their streams.

    Images are zeroed before the augmentation, so batches hold only its draws: Lightning restarts a plain
    DataLoader on a mid-epoch resume (other items), which must not matter to the augmentations.
    """
    factory, plate, keys, val_batches = MODULES[name]
    plate = request.getfixturevalue(plate)
    if name == "triplet":
        pytest.importorskip("tensorstore")

    def run(directory, ckpt_path=None, **kwargs):
        record = _Record(keys)
        trainer = _trainer(tmp_path / directory, [record, *kwargs.pop("callbacks", [])], **kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")
            trainer.fit(_Probe(keys), factory(plate), ckpt_path=ckpt_path)
        return record

    uninterrupted = run("a", limit_val_batches=val_batches)
    n_steps = len(uninterrupted.train)
    assert n_steps >= 4
    stop_at = n_steps // 2
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=stop_at, save_top_k=-1)
    first = run("b", max_steps=stop_at, limit_val_batches=0, enable_checkpointing=True, callbacks=[checkpoint])
    (saved,) = (tmp_path / "ckpt").glob("*.ckpt")
    rest = run("c", ckpt_path=saved, limit_val_batches=val_batches)
    assert len(first.train) == stop_at
    assert len(rest.train) == n_steps - stop_at
    assert len(rest.val) == len(uninterrupted.val) == val_batches
    resumed = first.train + rest.train + rest.val
    for seen, expected in zip(resumed, uninterrupted.train + uninterrupted.val, strict=True):
        assert expected[0].abs().sum() > 0
        for got, want in zip(seen, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    steps = [step[0] for step in uninterrupted.train]
    assert not any(torch.equal(steps[0], other) for other in steps[1:]), "every batch draws anew"
