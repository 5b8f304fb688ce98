"""Scale transfer: do two sweeps that share mixtures (the same mixture ids, proxies of two sizes) rank the
mixtures alike, and does a regressor fitted on the small one predict the large one's ranking?

It tells a user whether their proxies are big enough: if the small proxies' ranking (and a model fitted on
them) agrees with the larger ones', the small sweep is a fair stand-in; if not, train larger proxies.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regmix.errors import RegmixError
from regmix.regress.fit import fit_sweep
from regmix.regress.metrics import score
from regmix.tables import load_sweep

HOLDS = 0.9  # Spearman at or above which the small proxies' ranking "holds" at the larger size


@dataclass
class TargetTransfer:
    target: str
    ids: np.ndarray
    small_N: np.ndarray  # measured, small proxies
    large_N: np.ndarray  # measured, large proxies
    oof_N: np.ndarray  # out-of-fold prediction of a model fitted on the small sweep
    true: dict  # small measured vs large measured (Spearman, Pearson, ...)
    model: dict  # small model's out-of-fold prediction vs large measured
    top_k: int
    overlap: int  # of the small sweep's k best mixtures, how many are among the large sweep's k best
    regret: float  # large loss of the small model's best pick minus the large sweep's best

    def to_json(self) -> dict:
        return {"target": self.target, "runs": len(self.ids), "true_vs_true": self.true, "model_vs_large": self.model,
                "top_k": self.top_k, "top_k_overlap": self.overlap, "regret_on_large": self.regret,
                "holds": bool(self.true["spearman"] >= HOLDS and self.model["spearman"] >= HOLDS)}


def sweep_tables(folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder)
    paths = (folder / "mixtures.csv", folder / "metrics.csv")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RegmixError(f"{folder}: not a sweep folder (no {missing[0]}; run `regmix sweep` or give a folder "
                          "with mixtures.csv and metrics.csv)")
    return paths


def transfer(small: str | Path, large: str | Path, targets: list[str], kind: str = "gp", folds: int = 5,
             seed: int = 0, top_k: int = 5) -> list[TargetTransfer]:
    """Compare the two sweeps on every target, over the mixture ids they share (their weights must agree)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few runs: fit's own warnings say the obvious here
        mix_a, y_a, names = load_sweep(*sweep_tables(small), targets)
        mix_b, y_b, names_b = load_sweep(*sweep_tables(large), targets)
    if names != names_b:
        raise RegmixError(f"{large}: targets resolve to {', '.join(names_b)}, not {', '.join(names)} as in {small}")
    if tuple(mix_a.domains) != tuple(mix_b.domains):
        raise RegmixError(f"{large}: domains {', '.join(mix_b.domains)[:120]} differ from those of {small}")
    row_b = {str(i): j for j, i in enumerate(mix_b.ids)}
    pairs = [(i, row_b[str(run)]) for i, run in enumerate(mix_a.ids) if str(run) in row_b]
    if len(pairs) < 8:
        raise RegmixError(f"{small} and {large} share {len(pairs)} mixture id(s) with a finite target; "
                          "need at least 8 (train the same mixtures at both sizes: same sampler, seed and n_proxies)")
    ia, ib = map(np.asarray, zip(*pairs))
    differ = np.abs(mix_a.w_NxK[ia] - mix_b.w_NxK[ib]).max(axis=1) > 1e-6
    if differ.any():
        bad = mix_a.ids[ia[np.argmax(differ)]]
        raise RegmixError(f"{large}: mixture id {bad} has other weights than in {small}: the sweeps share ids, "
                          "not mixtures")
    shared = mix_a.subset(ia)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, oof = fit_sweep(shared, y_a[ia], names, kind, min(folds, len(ia)), seed, progress=False)
    out = []
    k = min(top_k, len(ia))
    for t, name in enumerate(names):
        a, b, p = y_a[ia, t], y_b[ib, t], oof[f"{name}:oof"].to_numpy()
        best_a, best_b = set(np.argsort(a)[:k]), set(np.argsort(b)[:k])
        out.append(TargetTransfer(name, shared.ids, a, b, p, score(b, a), score(b, p), k, len(best_a & best_b),
                                  float(b[int(np.argmin(p))] - b.min())))
    return out


def plot(results: list[TargetTransfer], unit: str = "nats/byte"):
    """Per target: large vs small measured losses, and large measured vs the small model's prediction."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 4.2 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        for ax, x, label, s in [(row[0], r.small_N, "small proxies, measured", r.true["spearman"]),
                                (row[1], r.oof_N, "predicted from the small sweep (out of fold)", r.model["spearman"])]:
            ax.scatter(x, r.large_N, s=18, color="#0072B2", alpha=0.8)
            ax.set_xlabel(f"{label} ({unit})")
            ax.set_ylabel(f"large proxies, measured ({unit})")
            ax.set_title(f"{r.target}: Spearman {s:.3f} over {len(r.ids)} mixtures", fontsize=10)
            ax.grid(alpha=0.3)
    fig.suptitle("Does the small proxies' ranking hold at the larger size?", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (4.2 * len(results))))  # room for the title above the first row
    return fig
