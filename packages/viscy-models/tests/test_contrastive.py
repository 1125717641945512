import pytest
import torch

from viscy_models import ContrastiveEncoder, ResNet3dEncoder
from viscy_models.contrastive import projection_mlp


@pytest.fixture(scope="module")
def convnext_encoder() -> ContrastiveEncoder:
    return ContrastiveEncoder("convnext_tiny", in_channels=2, in_stack_depth=15)


def test_convnext_encoder_shapes(convnext_encoder):
    convnext_encoder.eval()
    embedding, projection = convnext_encoder(torch.rand(2, 2, 15, 64, 64))
    assert embedding.shape == (2, 768)
    assert projection.shape == (2, 128)
    assert convnext_encoder.backbone == "convnext_tiny"
    assert convnext_encoder.embedding_size == 768


def test_resnet50_encoder_shapes():
    model = ContrastiveEncoder("resnet50", in_channels=1, in_stack_depth=10, embedding_dim=2048).eval()
    assert model.stem.conv.weight.shape == (32, 1, 5, 4, 4)
    embedding, projection = model(torch.rand(2, 1, 10, 64, 64))
    assert embedding.shape == (2, 2048)
    assert projection.shape == (2, 128)


def test_custom_stem_and_projection():
    model = ContrastiveEncoder(
        "convnextv2_atto",
        in_channels=1,
        in_stack_depth=10,
        stem_kernel_size=(5, 2, 2),
        stem_stride=(5, 2, 2),
        embedding_dim=32,
        projection_dim=16,
    ).eval()
    assert model.stem.conv.weight.shape == (20, 1, 5, 2, 2)
    embedding, projection = model(torch.rand(2, 1, 10, 32, 32))
    assert embedding.shape == (2, 320)
    assert projection.shape == (2, 16)


def test_embedding_dim_sets_the_projection_width_not_the_embedding_size():
    with torch.device("meta"):
        model = ContrastiveEncoder("convnext_tiny", in_channels=1, in_stack_depth=5, embedding_dim=512)
    assert model.embedding_size == 768
    assert model.projection[0].weight.shape == (512, 768)
    assert model.projection[3].weight.shape == (128, 512)


def test_unsupported_backbone_lists_the_supported_ones():
    """Regression: the reference failed with UnboundLocalError for other backbones."""
    with pytest.raises(ValueError, match="ContrastiveEncoder does not support backbone 'vit_base_patch16_224'") as info:
        ContrastiveEncoder("vit_base_patch16_224", in_channels=1, in_stack_depth=5)
    for name in ("convnext_tiny", "convnextv2_tiny", "resnet50"):
        assert name in str(info.value)


def test_stem_that_cannot_feed_the_backbone():
    with pytest.raises(ValueError, match="Stem needs to output"), torch.device("meta"):
        ContrastiveEncoder("convnext_tiny", in_channels=1, in_stack_depth=25)


def test_contrastive_gradients_reach_every_parameter(params_without_grad):
    model = ContrastiveEncoder("convnextv2_atto", in_channels=1, in_stack_depth=5, embedding_dim=64)
    embedding, projection = model(torch.rand(2, 1, 5, 32, 32))
    (embedding.square().mean() + projection.square().mean()).backward()
    assert params_without_grad(model) == []


def test_contrastive_eval_is_deterministic(convnext_encoder):
    convnext_encoder.eval()
    x = torch.rand(2, 2, 15, 64, 64)
    with torch.no_grad():
        first, second = convnext_encoder(x), convnext_encoder(x)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


@pytest.mark.parametrize(("backbone", "channels"), [("resnet10", 512), ("resnet18", 512)])
def test_resnet3d_shapes(backbone, channels):
    model = ResNet3dEncoder(backbone, in_channels=1, embedding_dim=channels).eval()
    embedding, projection = model(torch.rand(2, 1, 16, 16, 16))
    assert embedding.shape == (2, channels)
    assert projection.shape == (2, 128)


def test_resnet3d_gradients_and_determinism(params_without_grad):
    model = ResNet3dEncoder("resnet10", in_channels=2)
    embedding, projection = model(torch.rand(2, 2, 16, 16, 16))
    (embedding.square().mean() + projection.square().mean()).backward()
    assert params_without_grad(model) == []
    model.eval()
    x = torch.rand(2, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])


def test_resnet3d_validates_backbone_and_embedding_dim():
    with pytest.raises(ValueError, match="does not support backbone 'resnet11'; choose one of \\('resnet10'"):
        ResNet3dEncoder("resnet11")
    with pytest.raises(ValueError, match="embedding_dim=512 does not match the resnet50 output channels 2048"):
        ResNet3dEncoder("resnet50")


def test_projection_mlp_layout():
    mlp = projection_mlp(8, 6, 4)
    assert [type(layer).__name__ for layer in mlp] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert mlp(torch.rand(3, 8)).shape == (3, 4)


def test_backbone_with_pretrained_tag_is_accepted():
    with torch.device("meta"):
        model = ContrastiveEncoder("convnext_tiny.fb_in22k", in_channels=1, in_stack_depth=5)
    assert model.embedding_size == 768
