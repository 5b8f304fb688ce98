"""Measure `regmix prepare` on the embedded corpus: byte-level MB/s per core, BPE training time on 10 MB.

    python benchmarks/bench_prepare.py [--vocab 8000] [--repeat 3]

Targets (issue 3): byte-level prepare >= 20 MB/s per core; BPE training on 10 MB <= 10 s.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

from regmix.corpus.demo import demo_corpus_path
from regmix.corpus.prepare import _bpe_sample, prepare
from regmix.corpus.readers import discover
from regmix.corpus.tokenizer import train_bpe


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bpe-mb", type=float, default=10.0)
    ap.add_argument("--skip-bpe-prepare", action="store_true")
    args = ap.parse_args()
    report = {"cores": os.cpu_count()}
    quiet = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        best = None
        for i in range(args.repeat):
            meta, wall, cpu = timed(lambda: prepare("demo", f"{tmp}/byte{i}", progress=False, log=quiet))
            if best is None or wall < best[1]:
                best = (meta, wall, cpu)
        meta, wall, cpu = best
        text = sum(d["train_bytes"] + d["valid_bytes"] for d in meta["domains"].values())
        tokens = sum(d["train_tokens"] + d["valid_tokens"] for d in meta["domains"].values())
        report["byte_prepare"] = {
            "text_mb": round(text / 1e6, 2), "tokens": tokens, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "mb_per_s": round(text / wall / 1e6, 1),
            "mb_per_s_per_core": round(text / max(cpu, wall) / 1e6, 1),
            "target_mb_per_s_per_core": 20,
        }
        _, wall, cpu = timed(lambda: prepare("demo", f"{tmp}/byte0", progress=False, log=quiet))
        report["byte_prepare_rerun_reuse_s"] = round(wall, 3)

        sources = discover(demo_corpus_path())
        sample = list(_bpe_sample(sources, "text", int(args.bpe_mb * 1e6)))
        sample_mb = sum(len(t.encode()) for t in sample) / 1e6
        tok, wall, cpu = timed(lambda: train_bpe(sample, args.vocab))
        report["bpe_train"] = {"sample_mb": round(sample_mb, 2), "vocab_size": tok.vocab_size,
                               "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "target_s": 10}
        if not args.skip_bpe_prepare:
            meta, wall, cpu = timed(lambda: prepare("demo", f"{tmp}/bpe", tokenizer=f"bpe:{args.vocab}",
                                                    bpe_sample_bytes=int(args.bpe_mb * 1e6), progress=False,
                                                    log=quiet))
            tokens = sum(d["train_tokens"] + d["valid_tokens"] for d in meta["domains"].values())
            report["bpe_prepare"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "tokens": tokens,
                                     "bytes_per_token": round(text / tokens, 2),
                                     "mb_per_s_including_training": round(text / wall / 1e6, 2)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
