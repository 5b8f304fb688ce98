"""Regression from mixture weights to target metrics: models, cross-validation, persistence."""
