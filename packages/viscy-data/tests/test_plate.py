"""Where each data module reads, normalizes and augments a batch: the shared base and its siblings."""

from pathlib import Path

import pytest
from monai.data.utils import no_collation

from viscy_data.cell_division_triplet import CellDivisionTripletDataModule
from viscy_data.ctmc_v1 import CTMCv1DataModule
from viscy_data.gpu_aug import CachedOmeZarrDataModule, GPUTransformDataModule
from viscy_data.hcs import HCSDataModule
from viscy_data.livecell import LiveCellDataModule
from viscy_data.mmap_cache import MmappedDataModule
from viscy_data.plate import PlateDataModule
from viscy_data.thread_loader import ThreadedDataLoader
from viscy_data.triplet import TripletDataModule

DATA_MODULES = [
    HCSDataModule,
    TripletDataModule,
    CellDivisionTripletDataModule,
    GPUTransformDataModule,
    CachedOmeZarrDataModule,
    MmappedDataModule,
    CTMCv1DataModule,
    LiveCellDataModule,
]


@pytest.fixture
def triplets(tracking_plate):
    pytest.importorskip("tensorstore")
    return TripletDataModule(
        tracking_plate.store_path,
        tracking_plate.tracks_path,
        ["Phase3D", "GFP"],
        z_range=(1, 6),
        initial_yx_patch_size=(32, 32),
        final_yx_patch_size=(24, 24),
        batch_size=4,
        num_workers=0,
        time_interval=1,
    )


@pytest.mark.parametrize("module_class", DATA_MODULES, ids=lambda cls: cls.__name__)
def test_docstring_says_where_a_batch_is_read_normalized_and_augmented(module_class):
    assert "Where a batch is read, normalized and augmented:" in module_class.__doc__


def test_the_plate_base_is_abstract(synthetic_plate):
    with pytest.raises(TypeError, match="abstract"):
        PlateDataModule(synthetic_plate.store_path, "Phase3D", 1, 0.8, (32, 32), caching=False)


def test_hcs_takes_stage_dispatch_and_loaders_from_the_base(synthetic_plate):
    dm = HCSDataModule(synthetic_plate.store_path, "Phase3D", "GFP", z_window_size=3, num_workers=0)
    assert isinstance(dm, PlateDataModule)
    assert type(dm).setup is PlateDataModule.setup
    assert type(dm).val_dataloader is PlateDataModule.val_dataloader


def test_triplet_is_a_sibling_of_hcs_that_disables_nothing(triplets):
    assert isinstance(triplets, PlateDataModule)
    assert not isinstance(triplets, HCSDataModule)
    for hcs_only in ("target_channel", "target_2d", "ground_truth_masks", "train_patches_per_stack"):
        assert not hasattr(triplets, hcs_only)
    assert "on_before_batch_transfer" not in vars(TripletDataModule)
    assert TripletDataModule._setup_test is PlateDataModule._setup_test
    with pytest.raises(NotImplementedError, match="TripletDataModule does not support testing"):
        triplets.setup("test")
    assert triplets.yx_patch_size == triplets.final_yx_patch_size == (24, 24)
    assert triplets.z_window_size == 5


def test_triplet_reads_whole_batches_in_threads_and_transforms_after_transfer(triplets):
    triplets.setup("fit")
    loader = triplets.train_dataloader()
    assert isinstance(loader, ThreadedDataLoader)
    assert loader.collate_fn is no_collation
    assert loader.drop_last
    batch = next(iter(loader))
    # read untransformed; nothing augments, so only the final patch is read (initial_yx_patch_size is 32x32)
    assert triplets.read_yx_patch_size == (24, 24)
    assert batch["anchor"].shape == (4, 2, 5, 24, 24)
    assert triplets.on_after_batch_transfer(batch, 0)["anchor"].shape == (4, 2, 5, 24, 24)


def test_readme_example_of_a_new_data_module_runs(synthetic_plate):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("## How to add a data module", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)  # the README's own example
    module_class = namespace["UncachedDataModule"]
    test_docstring_says_where_a_batch_is_read_normalized_and_augmented(module_class)
    dm = module_class(synthetic_plate.store_path, ["GFP"])
    dm.setup("fit")
    assert len(dm.train_dataset) + len(dm.val_dataset) == 8 * 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["GFP"].shape == (4, 1, 5, 64, 64)
    assert batch["norm_meta"]["GFP"]["fov_statistics"]["mean"].shape == (4,)
