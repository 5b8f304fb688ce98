"""Names of the regressors (kept apart so the CLI can list them without importing LightGBM)."""

MODEL_KINDS = ("gp", "lightgbm", "lightgbm-features", "loglinear", "linear", "mixing-law", "ensemble", "stack")
