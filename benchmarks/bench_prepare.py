"""Measure `regmix prepare` on the embedded corpus: byte-level MB/s per core, BPE training time on 10 MB.

    python benchmarks/bench_prepare.py [--vocab 8000] [--repeat 3] [--large-mb 128]

Targets (issue 3): byte-level prepare >= 20 MB/s per core; BPE training on 10 MB <= 10 s.
"Per core" divides by the CPU seconds of the process (prepare is single-threaded for byte-level),
so the figure holds on a shared machine; wall-clock MB/s is printed too. `--large-mb` also writes a
synthetic uncompressed corpus of that size and reports throughput and peak memory of a
`regmix prepare` subprocess on it (bounded memory: peak RSS must not grow with the corpus).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regmix.corpus.demo import demo_corpus_path
from regmix.corpus.prepare import _bpe_sample, prepare
from regmix.corpus.readers import discover
from regmix.corpus.tokenizer import train_bpe


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def large_corpus(tmp: Path, size_mb: int) -> dict:
    """Prepare a synthetic two-domain corpus (jsonl + txt, uncompressed) in a subprocess."""
    import lzma

    src = demo_corpus_path() / "kerneldocs" / "train.jsonl.xz"
    docs = [json.loads(line)["text"] for line in lzma.open(src, "rt", encoding="utf-8")]
    block = sum(len(d.encode()) for d in docs)
    copies = max(1, size_mb * 10**6 // (2 * block))
    (tmp / "large" / "web").mkdir(parents=True)
    (tmp / "large" / "books").mkdir()
    with open(tmp / "large" / "web" / "a.jsonl", "w", encoding="utf-8") as fh:
        for i in range(copies):
            fh.writelines(json.dumps({"text": f"{d}\n{i}"}) + "\n" for d in docs)
    with open(tmp / "large" / "books" / "b.txt", "w", encoding="utf-8") as fh:
        for _ in range(copies):
            fh.writelines(d + "\n\n" for d in docs)
    size = sum(p.stat().st_size for p in (tmp / "large").rglob("*") if p.is_file())
    t0 = time.perf_counter()
    # VmHWM (peak RSS of this process image; ru_maxrss would include the forked parent's pages)
    child = ("import json, resource, sys; from regmix.cli import main; rc = main(sys.argv[1:]); "
             "u = resource.getrusage(resource.RUSAGE_SELF); "
             "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
             "print(json.dumps([hwm, u.ru_utime + u.ru_stime])); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", child, "prepare", "--corpus", str(tmp / "large"),
                          "--out", str(tmp / "large_store"), "--no-progress"],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    maxrss_kb, cpu = json.loads(res.stdout.strip().splitlines()[-1])
    return {"input_mb": round(size / 1e6, 1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "mb_per_s_per_core": round(size / cpu / 1e6, 1), "peak_rss_mb": round(maxrss_kb / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bpe-mb", type=float, default=10.0)
    ap.add_argument("--skip-bpe-prepare", action="store_true")
    ap.add_argument("--large-mb", type=int, default=128, help="synthetic corpus size for the memory check (0: skip)")
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
            "mb_per_s_per_core": round(text / cpu / 1e6, 1),
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
        if args.large_mb:
            report["large_corpus"] = large_corpus(Path(tmp), args.large_mb)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
