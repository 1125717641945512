"""Output equivalence with the reference on tiny models: its weights load strictly and give its outputs.

fixtures/reference_outputs holds, per case, the reference model's (perturbed) state_dict, a fixed input and the
reference eval-mode outputs (see fixtures/README.md).
"""

from pathlib import Path

import pytest
import torch

import viscy_models
import viscy_models.unet.fcmae as fcmae

FIXTURES = Path(__file__).parent / "fixtures"

CASES = sorted((FIXTURES / "reference_outputs").glob("*.pt"))


def _as_kwargs(kwargs: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in kwargs.items()}


@pytest.mark.parametrize("case_path", CASES, ids=[path.stem for path in CASES])
def test_reference_weights_give_reference_outputs(case_path, monkeypatch):
    record = torch.load(case_path, weights_only=True)
    model = getattr(viscy_models, record["model"])(**_as_kwargs(record["kwargs"]))
    model.load_state_dict(record["state_dict"], strict=True)
    model.eval()
    x = record["input"]
    expected = record["outputs"]
    with torch.no_grad():
        if record["mask_ratio"] is not None:
            stride = model.encoder.total_stride
            patch_mask = expected["mask"][:, :, ::stride, ::stride].clone()
            monkeypatch.setattr(fcmae, "generate_mask", lambda *args, **kwargs: patch_mask)
            y, mask = model(x, mask_ratio=record["mask_ratio"])
            outputs = {"y": y, "mask": mask}
        elif record["model"] == "FullyConvolutionalMAE":
            outputs = {"y": model(x)[0]}
        elif record["model"] == "BetaVaeMonai":
            out = model(x)
            outputs = {"recon_x": out.recon_x, "mean": out.mean, "logvar": out.logvar}
        else:
            outputs = {"y": model(x)}
    assert outputs.keys() == expected.keys()
    for key, value in expected.items():
        if value.dtype == torch.bool:
            assert torch.equal(outputs[key], value)
        else:
            torch.testing.assert_close(outputs[key], value, rtol=1e-5, atol=1e-5)
