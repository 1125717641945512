"""AUG-03: temporal offsets drawn with exponential decay over the tau range, never 0."""

import itertools

import numpy as np
import pytest

import dynaclr
from dynaclr.tau_sampling import sample_tau, tau_probabilities


def _draws(tau_min, tau_max, decay_rate=2.0, n=1000, seed=0):
    return sample_tau(tau_min, tau_max, np.random.default_rng(seed), decay_rate=decay_rate, size=n)


def test_exported_from_dynaclr():
    assert dynaclr.sample_tau is sample_tau


def test_draws_stay_within_range():
    rng = np.random.default_rng(0)
    draws = [sample_tau(1, 10, rng) for _ in range(1000)]
    assert min(draws) >= 1
    assert max(draws) <= 10


def test_decay_favours_small_offsets():
    assert np.median(_draws(1, 10)) < 5.5


def test_zero_decay_is_uniform():
    draws = _draws(1, 10, decay_rate=0.0, n=20000)
    assert abs(draws.mean() - 5.5) < 0.5
    counts = np.bincount(draws, minlength=11)[1:]
    assert counts.min() > 0.8 * counts.max()


def test_strong_decay_concentrates_on_tau_min():
    draws = _draws(1, 10, decay_rate=5.0)
    assert (draws <= 2).mean() > 0.5


def test_frequencies_decay_exponentially():
    taus, probabilities = tau_probabilities(1, 5, decay_rate=2.0)
    np.testing.assert_array_equal(taus, [1, 2, 3, 4, 5])
    expected = np.exp(-2.0 * np.arange(5) / 4)
    np.testing.assert_allclose(probabilities, expected / expected.sum())
    frequencies = np.bincount(_draws(1, 5, n=50000), minlength=6)[1:] / 50000
    np.testing.assert_allclose(frequencies, probabilities, atol=0.01)
    assert np.all(np.diff(frequencies) < 0)


def test_larger_decay_gives_smaller_mean():
    means = [_draws(1, 10, decay_rate=rate, n=5000).mean() for rate in (0.0, 1.0, 2.0, 5.0)]
    assert all(later < earlier for earlier, later in itertools.pairwise(means))


def test_equal_bounds_return_that_offset():
    rng = np.random.default_rng(0)
    assert {sample_tau(3, 3, rng) for _ in range(20)} == {3}


def test_same_seed_same_sequence_other_seed_differs():
    def sequence(seed):
        rng = np.random.default_rng(seed)
        return [sample_tau(1, 10, rng) for _ in range(50)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    np.testing.assert_array_equal(_draws(1, 10, seed=3), _draws(1, 10, seed=3))


def test_returns_a_python_int_or_an_int_array():
    value = sample_tau(1, 10, np.random.default_rng(0))
    assert type(value) is int
    draws = sample_tau(1, 10, np.random.default_rng(0), size=(2, 3))
    assert draws.shape == (2, 3)
    assert draws.dtype == np.int64


@pytest.mark.parametrize(("tau_min", "tau_max"), [(0, 1), (0, 4), (-3, 3), (-2, 0), (0, 10)])
def test_never_zero(tau_min, tau_max):
    """A range starting at (or spanning) 0 frames never yields 0: the anchor is never its own positive."""
    rng = np.random.default_rng(0)
    assert all(sample_tau(tau_min, tau_max, rng) != 0 for _ in range(200))
    draws = _draws(tau_min, tau_max, n=5000)
    assert np.all(draws != 0)
    assert draws.min() >= tau_min
    assert draws.max() <= tau_max


def test_first_draw_with_tau_min_zero_is_not_zero():
    """The reference's latent bug: with tau_min == 0 the first draw could be 0."""
    assert all(sample_tau(0, 2, np.random.default_rng(seed)) != 0 for seed in range(200))


def test_zero_is_dropped_and_the_other_weights_kept():
    taus, probabilities = tau_probabilities(0, 4, decay_rate=2.0)
    np.testing.assert_array_equal(taus, [1, 2, 3, 4])
    weights = np.exp(-2.0 * np.arange(1, 5) / 4)
    np.testing.assert_allclose(probabilities, weights / weights.sum())


def test_ranges_spanning_zero_favour_small_absolute_offsets():
    taus, probabilities = tau_probabilities(-3, 3, decay_rate=2.0)
    np.testing.assert_array_equal(taus, [-3, -2, -1, 1, 2, 3])
    np.testing.assert_allclose(probabilities, probabilities[::-1])
    assert probabilities[2] > probabilities[1] > probabilities[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 0), "no offset other than 0"),
        ((5, 2), "must not exceed"),
        ((1, 2.5), "integers"),
        ((1, 4, -1.0), "decay_rate"),
    ],
)
def test_invalid_ranges(arguments, message):
    tau_min, tau_max, *decay = arguments
    with pytest.raises(ValueError, match=message):
        sample_tau(tau_min, tau_max, np.random.default_rng(0), *decay)
