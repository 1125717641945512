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
# |output - reference| <= 1e-5 + 1e-5 * |reference|. Measured on an AVX-512 Xeon across ATEN_CPU_CAPABILITY
# default/avx2/avx512 x 1/2 threads x oneDNN on/off, ONEDNN_MAX_CPU_ISA SSE41/AVX2/AVX512_CORE and
# MKL_ENABLE_INSTRUCTIONS AVX2/AVX512: max |diff| to the saved outputs 1.8e-6 (fcmae_tiny_head_conv, |y| <= 6.1;
# <= 2.4e-7 for the other cases), float32 vs float64 <= 1.2e-6, so two float32 kernel paths differ by <= 2.4e-6.
# The bound is 4x that; the worst path uses 13% of it (max |diff| / bound). Scaling a single weight tensor by 1.01
# fails the test for 57-100% of the tensors of each case (median 3.6x to 120x the bound); moving every weight by
# one ulp, which is rounding noise, uses <= 12% of it.
RTOL = ATOL = 1e-5


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
            torch.testing.assert_close(outputs[key], value, rtol=RTOL, atol=ATOL)
