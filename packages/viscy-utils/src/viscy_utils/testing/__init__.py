"""Helpers that the tests of every VisCy package share.

- :mod:`viscy_utils.testing.modules`: tiny ``LightningModule`` and ``LightningDataModule``
  classes that a CLI config can name by ``class_path``
  (``viscy_utils.testing.TinyRegressor``), importable without pytest.
- :mod:`viscy_utils.testing.fixtures`: pytest fixtures (a small synthetic plate, the ``viscy``
  command run in-process or in a subprocess); import the ones a ``conftest.py`` needs::

      from viscy_utils.testing.fixtures import synthetic_plate  # noqa: F401
"""

from viscy_utils.testing.modules import IndexedCellsDataModule, RandomPairsDataModule, TinyEmbedder, TinyRegressor

__all__ = ["IndexedCellsDataModule", "RandomPairsDataModule", "TinyEmbedder", "TinyRegressor"]
