"""``dynaclr demo``: synthetic study, training, prediction and evaluation of DynaCLR in one command.

Modules, one stage each:

- :mod:`dynaclr.demo.settings`: sizes of the default and the ``--quick`` run, the held-out experiment;
- :mod:`dynaclr.demo.configs`: the ``fit.yml`` and predict configs it writes and runs;
- :mod:`dynaclr.demo.intensity`: per-cell intensity statistics, the hand-crafted baseline;
- :mod:`dynaclr.demo.evaluation`: infection linear probe and track smoothness of embeddings;
- :mod:`dynaclr.demo.figure` and :mod:`dynaclr.demo.report`: ``embeddings.png`` and ``report.md``;
- :mod:`dynaclr.demo.command`: the ``dynaclr demo`` command that runs them in order.

Importing this package imports neither torch nor Lightning.
"""
