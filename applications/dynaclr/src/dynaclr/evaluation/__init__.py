"""Evaluation commands of DynaCLR: linear classifiers on embeddings and the scripts around them.

Each command module defines a :class:`click.Command` named ``main`` that the ``dynaclr`` CLI
imports only when the command runs (see :data:`dynaclr.cli.COMMANDS`):

- :mod:`dynaclr.evaluation.linear_classifiers`: ``train-linear-classifier``,
  ``apply-linear-classifier``, ``discover-datasets`` and ``generate-train-config`` (these need
  ``pip install 'dynaclr[eval]'``);
- :mod:`dynaclr.evaluation.generate_prediction_scripts`: ``generate-prediction-scripts``,
  which writes predict configs and SLURM scripts without importing torch.
"""
