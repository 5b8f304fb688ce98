"""Do merged models rank mixtures as trained models do? Merged vs seed-continued vs from-scratch.

    nice python benchmarks/merge_study.py --store STORE --out DIR [--n 16] [--seed-steps 100]
        [--branch-steps 40] [--lr-factor 0.1] [--grid]

For `--n` mixtures sampled as a sweep samples them (RegMix sampler over the train domains): the
merged model of the branches (proxies.merge), a model trained from the seed on the mixture itself
for as long as a branch (the comparison of Na et al. 2024) and a proxy trained from scratch on it
for seed + branch steps (what a sweep trains). Spearman and Pearson on the target's validation
loss between each pair. `--grid` repeats the merged-vs-continued comparison while moving one knob
at a time around the given setting (seed length, branch length, branch learning rate) and reports
the best setting. Writes DIR/study.json and prints a markdown table. STORE: a prepared token store
(e.g. `regmix prepare demo STORE --seq-len 128`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from proxies.branches import MergeConfig, MergeSettings, continued_losses, load_params, train_branches
from proxies.config import TrainConfig
from proxies.merge import ablation_mixtures, ablation_table, favoured_domains, merged_losses
from proxies.sweep import sample
from proxies.train import train_mixtures
from regmix.corpus.store import TokenStore

DOMAINS = ["books", "code", "kerneldocs", "legal", "math", "manpages"]


def corr(a, b) -> dict:
    return {"spearman": float(stats.spearmanr(a, b)[0]), "pearson": float(stats.pearsonr(a, b)[0])}


def config(args, seed_steps: int, branch_steps: int, lr_factor: float) -> MergeConfig:
    train = TrainConfig(steps=seed_steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
                        warmup_steps=max(seed_steps // 10, 1), eval_windows=args.eval_windows, eval_batch=32,
                        checkpoint_every=0, block_steps=8)
    return MergeConfig(store=Path(args.store), n_proxies=args.n, model=args.model, sampler="regmix",
                       train_domains=DOMAINS, eval_domains=DOMAINS + [args.target], seed=args.sample_seed,
                       train=train, merge=MergeSettings(seed_steps=seed_steps, branch_steps=branch_steps,
                                                        branch_lr_factor=lr_factor))


def one_setting(args, w_NxK, seed_steps, branch_steps, lr_factor, scratch=False) -> dict:
    cfg = config(args, seed_steps, branch_steps, lr_factor)
    out = Path(args.out) / f"s{seed_steps}_b{branch_steps}_lr{lr_factor:g}"
    store = TokenStore.open(cfg.store)
    t0 = time.perf_counter()
    record = train_branches(cfg, out)
    t_branches = time.perf_counter() - t0
    e = record["eval_domains"].index(args.target)
    t0 = time.perf_counter()
    merged, _ = merged_losses(load_params(out, record, 1), w_NxK, store=store, eval_domains=[args.target],
                              model=cfg.model, train=cfg.train, chunk=len(w_NxK))
    t_merge = time.perf_counter() - t0
    t0 = time.perf_counter()
    cont = continued_losses(cfg, out, record, w_NxK).val_loss_MxE[:, e]
    t_cont = time.perf_counter() - t0
    res = {"seed_steps": seed_steps, "branch_steps": branch_steps, "lr_factor": lr_factor,
           "merged": merged[:, 0].tolist(), "continued": cont.tolist(),
           "merged_vs_continued": corr(merged[:, 0], cont),
           "seconds": {"seed_and_branches": t_branches, "merge_all": t_merge, "continued_all": t_cont}}
    if scratch:
        t0 = time.perf_counter()
        train = dataclasses.replace(cfg.train, steps=seed_steps + branch_steps)
        fresh = train_mixtures(store, DOMAINS, w_NxK, model=cfg.model, train=train,
                               eval_domains=[args.target], proxy_ids=np.arange(len(w_NxK))).val_loss_MxE[:, 0]
        res["seconds"]["scratch_all"] = time.perf_counter() - t0
        res["scratch"] = fresh.tolist()
        res["merged_vs_scratch"] = corr(merged[:, 0], fresh)
        res["continued_vs_scratch"] = corr(cont, fresh)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({k: v for k, v in res.items() if k not in ("merged", "continued", "scratch")}), file=sys.stderr)
    return res


def ablate(args) -> int:
    """Merged effect on the target of removing and of doubling each domain around the natural mixture."""
    cfg = config(args, args.seed_steps, args.branch_steps, args.lr_factor)
    out = Path(args.out) / "ablate"
    record = train_branches(cfg, out)
    store = TokenStore.open(cfg.store)
    names, w = ablation_mixtures(np.array(record["base"]), DOMAINS)
    loss, _ = merged_losses(load_params(out, record, 1), w, store=store, eval_domains=[args.target],
                            model=cfg.model, train=cfg.train, chunk=len(w))
    table = ablation_table(names, loss[:, 0], DOMAINS)
    (Path(args.out) / "ablation.json").write_text(json.dumps({"base": record["base"], "table": table}, indent=1))
    print(f"merged {args.target} loss at the natural mixture: {table[0]['base']:.4f}\n")
    print("| domain | natural weight | removed | doubled |\n|---|---|---|---|")
    for r, wk in zip(table, record["base"]):
        f = lambda x: "-" if x is None else f"{x:+.4f}"
        print(f"| {r['domain']} | {wk:.3f} | {f(r['removed'])} | {f(r['doubled'])} |")
    print(f"\nfavoured (doubling helps most): {favoured_domains(table)}")
    return 0


def stack(args) -> int:
    """Cheap labels: out-of-fold Spearman of a regressor on n trained runs (n = 16..128 of a demo's sweep),
    from the mixture alone vs the mixture plus its merged loss as an extra feature (the demo's branches)."""
    import pandas as pd

    from proxies.branches import MergeConfig
    from regmix.config import from_dict
    from regmix.regress.fit import fold_ids
    from regmix.regress.models import make_model

    demo = Path(args.stack)
    folder = demo / "merging"
    record = json.loads((folder / "merge.json").read_text())
    cfg = from_dict(MergeConfig, record["config"], where=str(folder / "merge.json"))
    domains = record["train_domains"]
    mix = pd.read_csv(demo / "sweep" / "mixtures.csv")
    y = pd.read_csv(demo / "sweep" / "metrics.csv").set_index("run").loc[mix["run"], f"{args.target}_val_loss"]
    ok = y.notna().to_numpy()
    w, y = mix[domains].to_numpy(np.float64)[ok], y.to_numpy()[ok]
    w = w / w.sum(1, keepdims=True)
    merged = merged_losses(load_params(folder, record, 1), w, store=TokenStore.open(cfg.store),
                           eval_domains=[args.target], model=cfg.model, train=cfg.train, chunk=64)[0][:, 0]
    rows = []
    for n in [16, 32, 64, 128]:
        if n > len(y):
            break
        row = {"n": n, "merged_alone": float(stats.spearmanr(merged[:n], y[:n])[0])}
        for kind in ("linear", "lightgbm"):
            for label, x in (("without", w[:n]), ("with", np.column_stack([w[:n], merged[:n]]))):
                folds = fold_ids(n, 5 if n >= 20 else 4, 0)
                oof = np.zeros(n)
                for f in np.unique(folds):
                    test = folds == f
                    oof[test] = make_model(kind).fit(x[~test], y[:n][~test], seed=0).predict(x[test])
                row[f"{kind}_{label}"] = float(stats.spearmanr(oof, y[:n])[0])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    (Path(args.out) / "stacking.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| trained runs | merged loss alone | linear without / with merged | LightGBM without / with merged |")
    print("|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['merged_alone']:.3f} | {r['linear_without']:.3f} / {r['linear_with']:.3f} | "
              f"{r['lightgbm_without']:.3f} / {r['lightgbm_with']:.3f} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--target", default="pydocs")
    p.add_argument("--n", type=int, default=16, help="mixtures compared")
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.006)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--seed-steps", type=int, default=100)
    p.add_argument("--branch-steps", type=int, default=40)
    p.add_argument("--lr-factor", type=float, default=0.1)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--grid", action="store_true", help="move each knob around the setting")
    p.add_argument("--ablate", action="store_true", help="only the domain-ablation table around the natural mixture")
    p.add_argument("--stack", metavar="DEMO_DIR", help="only the stacking table, from a finished `regmix demo` folder")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.stack:
        return stack(args)
    if args.ablate:
        return ablate(args)
    cfg = config(args, args.seed_steps, args.branch_steps, args.lr_factor)
    w = sample(cfg, TokenStore.open(cfg.store), DOMAINS)
    base = (args.seed_steps, args.branch_steps, args.lr_factor)
    results = [one_setting(args, w, *base, scratch=True)]
    if args.grid:
        s, b, f = base
        for setting in [(s // 2, b, f), (s * 2, b, f), (s, b // 2, f), (s, b * 2, f), (s, b, f / 3), (s, b, f * 3)]:
            results.append(one_setting(args, w, *setting))
    best = max(results, key=lambda r: r["merged_vs_continued"]["spearman"])
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("grid",)}, "mixtures": w.tolist(),
               "results": results, "best": {k: best[k] for k in ("seed_steps", "branch_steps", "lr_factor",
                                                                  "merged_vs_continued")}}
    (Path(args.out) / "study.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["| seed steps | branch steps | branch lr factor | merged vs continued (Spearman / Pearson) | "
             "s per merged mixture | s per continued mixture |", "|---|---|---|---|---|---|"]
    for r in results:
        c, t = r["merged_vs_continued"], r["seconds"]
        lines.append(f"| {r['seed_steps']} | {r['branch_steps']} | {r['lr_factor']:g} | {c['spearman']:.3f} / "
                     f"{c['pearson']:.3f} | {t['merge_all'] / args.n:.3f} | {t['continued_all'] / args.n:.3f} |")
    r0 = results[0]
    lines += ["", f"at the first setting: merged vs from scratch {r0['merged_vs_scratch']['spearman']:.3f} / "
              f"{r0['merged_vs_scratch']['pearson']:.3f}; continued vs from scratch "
              f"{r0['continued_vs_scratch']['spearman']:.3f} / {r0['continued_vs_scratch']['pearson']:.3f} "
              f"(Spearman / Pearson, n = {args.n})", f"best: {summary['best']}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
