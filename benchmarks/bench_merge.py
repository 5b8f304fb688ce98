"""Cost of a merged mixture against training a proxy on it, and thousands of merged mixtures at once.

    nice python benchmarks/bench_merge.py --store STORE [--proxies 4] [--n 64] [--many 2000]

At the demo's sweep settings (regmix/configs/demo.yaml: tiny model, 200 steps x 8 x 128 tokens,
every eval domain scored on 128 windows): seconds per proxy of `train_mixtures` (a warm second
call, so compilation is left out as it is amortized over a sweep's groups) against seconds per
mixture of `merged_losses` (merge + the same evaluation, on every domain and on the target alone; warm). Then `--many` mixtures scored on
the target alone (16 windows, 2,048 tokens: a cheap label), timed end to end, compilation included.
Last, the ratio at RegMix's setting (1M-parameter proxies, 1B training tokens each, 16k evaluation
tokens per domain) from the time per token measured here: training costs about 3x a forward pass
per token, so the ratio is about 3 x train tokens / eval tokens. Branch weights are random: the
timings do not depend on them. STORE: a prepared store of the demo corpus (`regmix prepare demo`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

from proxies import model as modellib
from proxies.config import TrainConfig, preset
from proxies.merge import merged_losses
from proxies.train import train_mixtures
from regmix.corpus.store import TokenStore

DOMAINS = ["books", "code", "kerneldocs", "legal", "math", "manpages"]
TARGET = "pydocs"
DEMO = TrainConfig(steps=200, batch=8, seq_len=128, lr=0.006, warmup_steps=20, eval_windows=128, checkpoint_every=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--proxies", type=int, default=4, help="proxies trained together for the training time")
    p.add_argument("--n", type=int, default=64, help="merged mixtures for the time per mixture")
    p.add_argument("--many", type=int, default=2000, help="merged mixtures scored on the target alone")
    args = p.parse_args(argv)
    store = TokenStore.open(args.store)
    evals = DOMAINS + [TARGET]
    rng = np.random.default_rng(0)
    rec = {"load_avg_1m_start": os.getloadavg()[0], "settings": {"train": dataclasses.asdict(DEMO), "model": "tiny"}}

    w = rng.dirichlet(np.ones(len(DOMAINS)), size=args.proxies)
    train_mixtures(store, DOMAINS, w, model="tiny", train=DEMO, eval_domains=evals)  # compile
    t0 = time.perf_counter()
    train_mixtures(store, DOMAINS, w, model="tiny", train=DEMO, eval_domains=evals)
    rec["train_seconds_per_proxy"] = (time.perf_counter() - t0) / args.proxies

    branches = jax.vmap(modellib.init_params(preset("tiny"), store.vocab_size))(
        jax.random.split(jax.random.key(0), len(DOMAINS)))
    mix = rng.dirichlet(np.ones(len(DOMAINS)), size=args.n)
    merged_losses(branches, mix, store=store, eval_domains=evals, model="tiny", train=DEMO, chunk=64)  # compile
    t0 = time.perf_counter()
    merged_losses(branches, mix, store=store, eval_domains=evals, model="tiny", train=DEMO, chunk=64)
    rec["merge_seconds_per_mixture"] = (time.perf_counter() - t0) / args.n
    rec["ratio_demo"] = rec["train_seconds_per_proxy"] / rec["merge_seconds_per_mixture"]
    # a label for the target alone (what the pipeline's merging scores): same windows, one domain
    merged_losses(branches, mix, store=store, eval_domains=[TARGET], model="tiny", train=DEMO, chunk=64)
    t0 = time.perf_counter()
    merged_losses(branches, mix, store=store, eval_domains=[TARGET], model="tiny", train=DEMO, chunk=64)
    rec["merge_seconds_per_mixture_target_only"] = (time.perf_counter() - t0) / args.n
    rec["ratio_demo_target_only"] = rec["train_seconds_per_proxy"] / rec["merge_seconds_per_mixture_target_only"]

    cheap = dataclasses.replace(DEMO, eval_windows=16)
    many = rng.dirichlet(np.ones(len(DOMAINS)), size=args.many)
    t0 = time.perf_counter()
    merged_losses(branches, many, store=store, eval_domains=[TARGET], model="tiny", train=cheap, chunk=256)
    rec["many"] = {"mixtures": args.many, "seconds": time.perf_counter() - t0, "eval_tokens": 16 * DEMO.seq_len,
                   "domains": [TARGET]}

    # per token: training (fwd + bwd + update) vs merged evaluation (merge + fwd), from the runs above
    train_tokens = DEMO.steps * DEMO.batch * DEMO.seq_len
    eval_tokens = len(evals) * DEMO.eval_windows * DEMO.seq_len
    per_train_token = rec["train_seconds_per_proxy"] / (train_tokens + eval_tokens)  # the run ends with an eval
    per_eval_token = rec["merge_seconds_per_mixture"] / eval_tokens
    regmix_train, regmix_eval = 1e9, 16_384 * len(evals)
    rec["regmix_1m_1b"] = {"train_tokens": regmix_train, "eval_tokens": regmix_eval,
                           "ratio_measured_per_token": regmix_train * per_train_token / (regmix_eval * per_eval_token),
                           "ratio_flops": 3 * regmix_train / regmix_eval}
    rec["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(rec, indent=1, default=str))
    print(f"demo settings: {rec['train_seconds_per_proxy']:.2f} s to train a proxy, "
          f"{rec['merge_seconds_per_mixture']:.3f} s per merged mixture on all {len(evals)} domains: "
          f"{rec['ratio_demo']:.1f}x, {rec['merge_seconds_per_mixture_target_only']:.3f} s on the target alone: "
          f"{rec['ratio_demo_target_only']:.1f}x; "
          f"{args.many} merged mixtures (target only, 2,048 tokens) in {rec['many']['seconds']:.1f} s; "
          f"RegMix 1M x 1B: {rec['regmix_1m_1b']['ratio_measured_per_token']:,.0f}x (per token measured here), "
          f"{rec['regmix_1m_1b']['ratio_flops']:,.0f}x (FLOPs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
