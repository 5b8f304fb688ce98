"""Names of the regressors (kept apart so the CLI can list them without importing LightGBM)."""

MODEL_KINDS = ("lightgbm", "linear", "mixing-law", "ensemble")
