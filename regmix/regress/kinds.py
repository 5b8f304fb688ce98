"""Names of the regressors (kept apart so the CLI can list them without importing LightGBM)."""

MODEL_KINDS = ("gp", "lightgbm", "loglinear", "loglinear-pairs", "linear", "mixing-law", "ensemble")
