"""regmix: choose the data mixture of a pretraining run from a sweep of tiny proxy models.

The `regmix` package is the light side of the method (numpy, pandas, lightgbm; it never imports
JAX): tables, mixture spaces and sampling, regression, optimization, export, reports and the CLI.
The JAX side (token store batching, proxy models, sweeps, merging, final runs) is `proxies`.
"""

from regmix.errors import RegmixError

__version__ = "0.1.0"
__all__ = ["RegmixError", "__version__"]
