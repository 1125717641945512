import pytest
import torch
from monai.data import set_track_meta

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")],
)


@pytest.fixture(autouse=True)
def _monai_default_meta_tracking():
    """Compare against MONAI with its default MetaTensor tracking.

    viscy-data's modules switch MONAI's process-wide tracking off or on in ``setup``; in a
    root ``uv run pytest`` their tests run first, in the same process.
    """
    set_track_meta(True)


@pytest.fixture(params=["cpu", CUDA])
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


def _random_batch(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


@pytest.fixture
def make_batch():
    """Uniform [0, 1) batch of the given shape, reproducible from ``seed``."""
    return _random_batch
