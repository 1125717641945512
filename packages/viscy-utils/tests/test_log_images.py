import numpy as np
import torch

from viscy_utils import detach_sample, render_images


def test_detach_sample_keeps_each_views_channels():
    # regression: every view used the first view's channel count
    source = torch.rand(3, 1, 5, 8, 8)
    target = torch.rand(3, 2, 5, 8, 8)
    samples = detach_sample([source, target], log_samples_per_batch=2)
    assert len(samples) == 2
    assert samples[0][0].shape == (8, 8)
    assert samples[0][1].shape == (2, 8, 8)
    np.testing.assert_array_equal(samples[1][1], target[1, :, 2].numpy())


def test_render_images_layout_and_colors():
    samples = [[np.zeros((4, 4)), np.stack([np.eye(4), np.ones((4, 4))])] for _ in range(2)]
    samples[0][0][0, 0] = 1.0
    image = render_images(samples)
    assert image.dtype == np.uint8
    assert image.shape == (8, 12, 3)
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])  # gray colormap, max
    np.testing.assert_array_equal(image[0, 1], [0, 0, 0])
    assert image[0, 4].tolist() != image[0, 5].tolist()  # inferno of 1 vs 0
