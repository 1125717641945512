"""Linear classifiers on DynaCLR embeddings: the train, apply, discovery and config-generation commands.

The work is done by :mod:`viscy_utils.evaluation.linear_classifier`; these modules are its
command-line front end. They need ``pip install 'dynaclr[eval]'``, which importing this
package checks.
"""

from dynaclr.evaluation._requirements import EVAL_MODULES, require_modules

require_modules(*EVAL_MODULES)
