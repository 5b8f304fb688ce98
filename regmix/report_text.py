"""Plain-text tables printed by the CLI."""

from __future__ import annotations


def cv_table(cv: dict[str, dict[str, float]]) -> str:
    width = max(len("target"), *(len(t) for t in cv))
    lines = [f"{'target':<{width}}  {'spearman':>8}  {'pearson':>8}  {'mae':>8}  {'mse':>9}  {'runs':>5}"]
    for t, s in cv.items():
        lines.append(
            f"{t:<{width}}  {s['spearman']:8.4f}  {s['pearson']:8.4f}  {s['mae']:8.4f}  {s['mse']:9.5f}  {s['n_runs']:5d}"
        )
    return "\n".join(lines)


def weights_table(weights: dict[str, float], prior: dict[str, float] | None = None) -> str:
    width = max(len("domain"), *(len(d) for d in weights))
    head = f"{'domain':<{width}}  {'weight':>7}" + (f"  {'prior':>7}" if prior else "")
    lines = [head]
    for d, w in sorted(weights.items(), key=lambda kv: -kv[1]):
        lines.append(f"{d:<{width}}  {w:7.4f}" + (f"  {prior.get(d, 0.0):7.4f}" if prior else ""))
    return "\n".join(lines)
