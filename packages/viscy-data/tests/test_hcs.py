import re
import tempfile

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from monai.transforms import Compose, MapTransform, MultiSampleTrait, RandAffined, RandSpatialCropSamplesd

from viscy_data.hcs import HCSDataModule, MaskTestDataset, SlidingWindowDataset
from viscy_data.ome_compat import array_store_path, array_zarr_format, fov_name, open_ome_zarr
from viscy_data.read_errors import ArrayReadError


@pytest.fixture
def isolated_tmpdir(tmp_path, monkeypatch):
    """Point tempfile (and so the HCS cache) at this test's directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp"


def _module(plate, **kwargs):
    settings = {
        "source_channel": "Phase3D",
        "target_channel": "GFP",
        "z_window_size": 3,
        "batch_size": 4,
        "num_workers": 0,
        "yx_patch_size": (32, 32),
    }
    settings.update(kwargs)
    return HCSDataModule(plate.store_path, **settings)


def _fov_names(dataset):
    return [fov_name(position) for position in dataset.positions]


def test_fit_batches_shapes_and_split_by_fov(synthetic_plate):
    dm = _module(synthetic_plate)
    dm.setup("fit")
    train, val = _fov_names(dm.train_dataset), _fov_names(dm.val_dataset)
    assert len(train) == 6
    assert len(val) == 2
    assert set(train).isdisjoint(val)
    assert set(train) | set(val) == set(synthetic_plate.fov_names)
    assert len(dm.train_dataset) == 6 * 4 * 3  # FOVs x frames x Z windows
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert batch["source"].shape == (4, 1, 3, 32, 32)
        assert batch["target"].shape == (4, 1, 3, 32, 32)
        assert batch["source"].dtype == torch.float32
        names, times, zs = batch["index"]
        assert len(names) == 4
        assert times.shape == zs.shape == (4,)
        assert batch["norm_meta"]["GFP"]["fov_statistics"]["mean"].shape == (4,)


def test_split_and_batches_follow_the_seed(synthetic_plate):
    first, again, other = (
        _module(synthetic_plate, seed=0),
        _module(synthetic_plate, seed=0),
        _module(synthetic_plate, seed=1),
    )
    for dm in (first, again, other):
        dm.setup("fit")
    assert _fov_names(first.val_dataset) == _fov_names(again.val_dataset)
    assert _fov_names(first.val_dataset) != _fov_names(other.val_dataset)
    torch.testing.assert_close(
        next(iter(first.train_dataloader()))["source"], next(iter(again.train_dataloader()))["source"]
    )


def test_normalization_uses_each_samples_fov_and_timepoint(synthetic_plate, zscore):
    dm = _module(synthetic_plate, normalizations=[zscore(["Phase3D", "GFP"], level="timepoint_statistics")])
    dm.setup("fit")
    dataset = dm.val_dataset
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        for index in (0, len(dataset) - 1):
            sample = dataset[index]
            image_name, t, z = sample["index"]
            fov = image_name.strip("/").rsplit("/", 1)[0]
            stats = dict(plate[fov].zattrs)["normalization"]["Phase3D"]["timepoint_statistics"][str(t)]
            raw = plate[fov]["0"][t, 0, z : z + 3, 16:48, 16:48]
            expected = (raw - stats["mean"]) / stats["std"]
            np.testing.assert_allclose(sample["source"][0].numpy(), expected, rtol=1e-5, atol=1e-5)
            assert sample["norm_meta"]["GFP"]["timepoint_statistics"]["mean"].item() == pytest.approx(
                dict(plate[fov].zattrs)["normalization"]["GFP"]["timepoint_statistics"][str(t)]["mean"]
            )


def test_norm_meta_is_not_mutated(synthetic_plate):
    dm = _module(synthetic_plate)
    dm.setup("fit")
    before = dict(dm.val_dataset.positions[0].zattrs)["normalization"]
    next(iter(dm.val_dataloader()))
    after = dict(dm.val_dataset.positions[0].zattrs)["normalization"]
    assert after == before
    assert isinstance(after["GFP"]["fov_statistics"]["mean"], float)


def test_plate_without_normalization_collates(plate_without_norm):
    dm = _module(plate_without_norm)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert "norm_meta" not in batch
        assert batch["source"].shape == (4, 1, 3, 32, 32)


def test_multi_sample_crops_fill_the_batch(synthetic_plate):
    crop = RandSpatialCropSamplesd(keys=["Phase3D", "GFP"], roi_size=(3, 40, 40), num_samples=2, random_size=False)
    dm = _module(synthetic_plate, augmentations=[crop])
    dm.setup("fit")
    assert dm.train_patches_per_stack == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (4, 1, 3, 32, 32)
    with pytest.raises(ValueError, match="divisible by `num_samples`"):
        _module(synthetic_plate, batch_size=3, augmentations=[crop]).setup("fit")


def test_z_scaling_expands_training_window(synthetic_plate):
    affine = RandAffined(keys=["Phase3D", "GFP"], prob=1.0, scale_range=((-0.2, 0.3), 0, 0))
    dm = _module(synthetic_plate, augmentations=[affine])
    dm.setup("fit")
    assert dm.train_dataset.z_window_size == 4
    assert dm.val_dataset.z_window_size == 3
    assert next(iter(dm.train_dataloader()))["source"].shape == (4, 1, 3, 32, 32)
    bad = RandAffined(keys=["Phase3D"], prob=1.0, scale_range=((0.1, 0.3), 0, 0))
    with pytest.raises(ValueError, match="must contain 0"):
        _module(synthetic_plate, augmentations=[bad]).setup("fit")


def test_target_2d_keeps_centre_slice(synthetic_plate):
    dm = _module(synthetic_plate, target_2d=True)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    target = batch["target"].clone()
    out = dm.on_before_batch_transfer(batch, 0)
    assert out["target"].shape == (4, 1, 1, 32, 32)
    torch.testing.assert_close(out["target"][:, :, 0], target[:, :, 1])


@pytest.mark.parametrize("z_window_size", [1, 5])
def test_predict_covers_every_window(synthetic_plate, z_window_size):
    dm = _module(synthetic_plate, z_window_size=z_window_size)
    dm.setup("predict")
    assert len(dm.predict_dataset) == 8 * 4 * (5 - z_window_size + 1)
    sample = dm.predict_dataset[0]
    assert sample["source"].shape == (1, z_window_size, 64, 64)
    assert "target" not in sample


def test_predict_single_fov_path(synthetic_plate):
    dm = HCSDataModule(synthetic_plate.store_path / "B" / "2" / "1", "Phase3D", "GFP", z_window_size=5, num_workers=0)
    dm.setup("predict")
    assert _fov_names(dm.predict_dataset) == ["B/2/1"]


def test_mask_test_dataset_binds_arguments_by_name(synthetic_plate, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    iio.imwrite(masks / "plate_p001_z2_cp_masks.png", mask)
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        positions = [plate["A/1/1"], plate["A/2/0"]]
        dataset = MaskTestDataset(
            positions,
            {"source": ["Phase3D"], "target": ["GFP"]},
            1,
            transform=Compose([lambda s: {**s, "Phase3D": s["Phase3D"] * 0 + 7.0}]),
            ground_truth_masks=masks,
        )
        labelled = [dataset[i] for i in range(len(dataset)) if "labels" in dataset[i]]
        assert len(labelled) == 1
        assert labelled[0]["index"][1:] == (0, 2)
        assert labelled[0]["labels"].dtype == torch.int16
        np.testing.assert_array_equal(labelled[0]["labels"].numpy(), mask.astype(np.int16))
        assert (dataset[0]["source"] == 7.0).all(), "transform must be applied, not bound to array_key"
        unlabelled = MaskTestDataset(positions, {"source": ["Phase3D"]}, 1, ground_truth_masks=None)
        assert all("labels" not in unlabelled[i] for i in range(3))


def test_test_stage_with_masks(synthetic_plate, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    iio.imwrite(masks / "x_p000_z1_cp_masks.png", np.ones((64, 64), dtype=np.uint16))
    dm = _module(synthetic_plate, z_window_size=1, batch_size=1, ground_truth_masks=masks)
    dm.setup("test")
    assert isinstance(dm.test_dataset, MaskTestDataset)
    batches = list(dm.test_dataloader())
    assert len(batches) == 8 * 4 * 5
    assert sum("labels" in batch for batch in batches) == 4  # FOV "0" of each of the 4 wells, at t=0, z=1
    dm = _module(synthetic_plate, z_window_size=1)
    dm.setup("test")
    assert type(dm.test_dataset) is SlidingWindowDataset


def test_caching_copies_plate_and_reads_the_same(versioned_plate, isolated_tmpdir):
    plain = _module(versioned_plate)
    cached = _module(versioned_plate, caching=True)
    assert str(cached.cache_path).startswith(str(isolated_tmpdir))
    cached.prepare_data()
    with open_ome_zarr(cached.cache_path) as copy, open_ome_zarr(versioned_plate.store_path) as source:
        assert array_zarr_format(copy["A/1/0"]["0"]) == array_zarr_format(source["A/1/0"]["0"])
        np.testing.assert_array_equal(copy["B/2/1"]["0"][:], source["B/2/1"]["0"][:])
        assert dict(copy["B/2/1"].zattrs)["normalization"] == dict(source["B/2/1"].zattrs)["normalization"]
    cached.prepare_data()  # complete copy: reused, not rewritten
    plain.setup("fit")
    cached.setup("fit")
    for position in cached.train_dataset.positions:
        assert array_store_path(position["0"]).is_relative_to(isolated_tmpdir.resolve())
    torch.testing.assert_close(
        next(iter(plain.val_dataloader()))["source"], next(iter(cached.val_dataloader()))["source"]
    )


def test_cache_paths_are_unique_per_store(plate_factory, isolated_tmpdir):
    first, second = plate_factory(fovs_per_well=1, n_frames=1), plate_factory(fovs_per_well=1, n_frames=1, seed=2)
    assert first.store_path.name == second.store_path.name
    assert _module(first, caching=True).cache_path != _module(second, caching=True).cache_path


def test_interrupted_cache_is_rebuilt(plate_factory, isolated_tmpdir):
    plate = plate_factory(fovs_per_well=1, n_frames=1)
    dm = _module(plate, caching=True)
    dm.cache_path.mkdir(parents=True)
    (dm.cache_path / "junk").write_text("partial")
    dm.prepare_data()
    assert not (dm.cache_path / "junk").exists()
    dm.setup("fit")
    assert len(dm.train_dataset) > 0


def test_prefetch_factor_without_workers(synthetic_plate):
    dm = _module(synthetic_plate, prefetch_factor=4, persistent_workers=True)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["source"].shape[0] == 4


def test_bad_channel_lists_plate_channels(synthetic_plate):
    with pytest.raises(ValueError, match=r"\['RFP'\] not found; the data has channels \['Phase3D', 'GFP'\]"):
        _module(synthetic_plate, target_channel="RFP")


@pytest.mark.parametrize("z_window_size", [6, 0])
def test_z_window_past_the_stack(synthetic_plate, z_window_size):
    expected = (
        f"z_window_size {z_window_size} does not fit the 5 Z slices of {synthetic_plate.store_path}; "
        "use 1 <= z_window_size <= 5."
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        _module(synthetic_plate, z_window_size=z_window_size)
    with open_ome_zarr(synthetic_plate.store_path) as plate:
        with pytest.raises(IndexError, match=re.escape("z_window_size 6 is larger than the 5 Z slices of FOV A/1/0")):
            SlidingWindowDataset([plate["A/1/0"]], {"source": ["Phase3D"]}, z_window_size=6)


def test_z_scaling_past_the_stack_names_z_window_size_and_the_scale_range(synthetic_plate):
    affine = RandAffined(keys=["Phase3D", "GFP"], prob=1.0, scale_range=((-0.2, 0.5), 0, 0))
    dm = _module(synthetic_plate, z_window_size=4, augmentations=[affine])
    expected = (
        "z_window_size 4 grows to 6 Z slices for the Z scale range (-0.2, 0.5) of RandAffined, "
        f"more than the 5 Z slices of {synthetic_plate.store_path}"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        dm.setup("fit")


def test_missing_store_and_unknown_stage(synthetic_plate, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HCSDataModule(tmp_path / "missing.zarr", "Phase3D", "GFP", z_window_size=1)
    with pytest.raises(NotImplementedError, match="'tune'"):
        _module(synthetic_plate).setup("tune")


def test_reads_zarr_v3_and_v2(versioned_plate):
    dm = _module(versioned_plate)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["source"].shape == (4, 1, 3, 32, 32)


def test_fovs_must_share_channel_order(synthetic_plate, plate_factory):
    swapped = plate_factory(channel_names=("GFP", "Phase3D"), fovs_per_well=1, n_frames=1)
    with open_ome_zarr(synthetic_plate.store_path) as first, open_ome_zarr(swapped.store_path) as second:
        positions = [first["A/1/0"], second["A/1/0"]]
        with pytest.raises(ValueError, match="all FOVs must share one channel order"):
            SlidingWindowDataset(positions, {"source": ["GFP"]}, z_window_size=1)


@pytest.mark.parametrize("stage", ["fit", "predict"])
def test_corrupt_chunk_error_names_store_fov_array_and_time_point(plate_factory, stage):
    """The reference ended in "RuntimeError: error during blosc decompression: -1" and nothing else."""
    plate = plate_factory(n_frames=3, seed=4)
    dm = _module(plate, num_workers=2, batch_size=2)
    dm.setup(stage)
    dataset, loader = (
        (dm.train_dataset, dm.train_dataloader) if stage == "fit" else (dm.predict_dataset, dm.predict_dataloader)
    )
    fov = fov_name(dataset.positions[0])
    plate.corrupt_chunk(fov, t=2)
    with pytest.raises(ArrayReadError) as error:
        list(loader())
    message = str(error.value)
    assert f"time point 2 of array '0' of FOV '{fov}' in store '{plate.store_path}'" in message
    assert "blosc decompression" in message


class _TiledCrops(MapTransform, MultiSampleTrait):
    """A multi-sample crop of its own: a public ``num_samples`` and no MONAI ``cropper``."""

    def __init__(self, keys, roi_size, num_samples):
        super().__init__(keys)
        self.roi_size = roi_size
        self.num_samples = num_samples

    def __call__(self, sample):
        z, y, x = self.roi_size
        return [
            {k: (v[:, :z, i * y : (i + 1) * y, :x] if k in self.keys else v) for k, v in sample.items()}
            for i in range(self.num_samples)
        ]


class _Undeclared(MapTransform, MultiSampleTrait):
    def __call__(self, sample):
        return [sample, sample]


def test_augmentation_geometry_is_computed_at_construction_not_left_by_setup(synthetic_plate):
    affine = RandAffined(keys=["Phase3D", "GFP"], prob=1.0, scale_range=((-0.2, 0.3), 0, 0))
    crop = RandSpatialCropSamplesd(keys=["Phase3D", "GFP"], roi_size=(3, 40, 40), num_samples=2, random_size=False)
    dm = _module(synthetic_plate, augmentations=[affine, crop])
    assert dm.train_z_scale_range == (-0.2, 0.3)
    assert dm.train_patches_per_stack == 2
    dm._fit_transform()
    assert (dm.train_z_scale_range, dm.train_patches_per_stack) == ((-0.2, 0.3), 2)
    assert "train_patches_per_stack" not in vars(dm)
    assert "train_z_scale_range" not in vars(dm)
    assert _module(synthetic_plate).train_patches_per_stack == 1
    assert _module(synthetic_plate).train_z_scale_range == (0.0, 0.0)


@pytest.mark.parametrize(
    ("scale_range", "z_window_size", "train_z_window"),
    [
        (((-0.2, 0.3), 0, 0), 3, 4),  # the reference's case: ceil(3 * 1.3) = 4
        (0.3, 3, 4),  # a number s is the range (-s, s)
        (((-0.1, 0.5), 0, 0), 3, 4),  # ceil(4.5) = 5, rounded down to even
        (((0.0, 0.0), 0.2, 0.2), 3, 3),  # YX scaling only
        (None, 3, 3),  # rotation only: no Z scale range (the reference failed with a TypeError)
    ],
)
def test_training_window_follows_the_affines_z_scale_range(synthetic_plate, scale_range, z_window_size, train_z_window):
    affine = RandAffined(keys=["Phase3D", "GFP"], prob=1.0, rotate_range=(0.1, 0, 0), scale_range=scale_range)
    dm = _module(synthetic_plate, z_window_size=z_window_size, augmentations=[affine])
    dm.setup("fit")
    assert dm.train_dataset.z_window_size == train_z_window
    assert dm.val_dataset.z_window_size == z_window_size


def test_multi_sample_crop_without_monai_internals(synthetic_plate):
    """A crop that declares ``num_samples`` itself (like viscy-transforms' tiled crop) sizes the batch too."""
    dm = _module(synthetic_plate, augmentations=[_TiledCrops(["Phase3D", "GFP"], (3, 32, 32), num_samples=2)])
    assert dm.train_patches_per_stack == 2
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (4, 1, 3, 32, 32)
    with pytest.raises(ValueError, match="_Undeclared returns several samples but has no positive int num_samples"):
        _module(synthetic_plate, augmentations=[_Undeclared(["Phase3D"])])
    two = [_TiledCrops(["Phase3D"], (3, 32, 32), 2), _TiledCrops(["Phase3D"], (3, 16, 16), 2)]
    with pytest.raises(ValueError, match="Only one multi-sample augmentation is supported, got 2"):
        _module(synthetic_plate, augmentations=two)


def test_affine_declaring_its_own_scale_range(synthetic_plate):
    class DeclaredAffine(RandAffined):
        """An affine whose Z scale range is a public attribute of its own."""

        def __init__(self, keys, scale_range):
            super().__init__(keys=keys, prob=1.0)
            self.scale_range = scale_range

    dm = _module(synthetic_plate, augmentations=[DeclaredAffine(["Phase3D", "GFP"], ((-0.2, 0.3), 0, 0))])
    assert dm.train_z_scale_range == (-0.2, 0.3)
