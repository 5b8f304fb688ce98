"""The 1m proxy in PyTorch: training throughput to set beside `regmix bench proxies`.

The same model as proxies/model.py (preset "1m" of proxies/config.py: decoder-only, 2 layers,
d_model 256, 8 heads, d_ff 512, pre-norm RMSNorm, SwiGLU, rotary embeddings, no biases, untied
head, byte-level vocabulary of 257; the parameters carry the same names and, transposed, the same
shapes), trained in float32 with the optimizer of proxies/train.py (AdamW lr 1e-3, betas 0.9/0.95,
weight decay 0.1 on every parameter, global grad-norm clipping at 1.0; the learning-rate schedule
is left out, it costs nothing). The measurement follows proxies/bench.py: P worker processes, each
pinned to its own core(s), each training its share of the M proxies one after another every step
on seeded random tokens; after `--warmup` untimed steps all workers start the `--steps` timed
steps together behind a barrier. tokens/s is the sum over workers of tokens / timed seconds; MFU
is model FLOPs per second over the float32 matmul peak measured in the main process on all cores
(best of 5 square products of sizes 1024 and 2048). Model FLOPs per token = 6 x matmul parameters
(output head in, embedding lookups out) + 12 x layers x seq_len x d_model.

PyTorch is not a dependency of regmix; run this with any Python that has torch, e.g.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benchmarks/bench_torch.py --check
    # one proxy alone, one process on all (here 2) cores:
    /tmp/torchenv/bin/python benchmarks/bench_torch.py --json --mode eager --n-proxies 1 --processes 1 --threads 2
    # 16 proxies over 2 pinned single-threaded processes:
    /tmp/torchenv/bin/python benchmarks/bench_torch.py --json --mode compile --n-proxies 16 --processes 2

Modes: `eager`, and `compile` (torch.compile of the forward pass and loss, whose backward is
compiled with it; the clipping and the fused AdamW step, already one kernel per parameter, stay
eager). Compiling takes about a minute per worker the first time (inductor caches it on disk);
the warm-up steps absorb it. If compiling fails, the workers go on with eager code: the record
then says mode "eager" and carries "compile_error", and the reason is printed on stderr.

`--check` tests the model instead: initial loss near ln 257, causal attention, and a loss that
falls over 20 steps on one repeated batch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import sys
import time

VOCAB = 257  # bytes + end-of-document, as in the proxies' token stores
# The "1m" preset of proxies/config.py.
N_LAYERS, D_MODEL, N_HEADS, D_FF = 2, 256, 8, 512
ROPE_BASE, INIT_STD, NORM_EPS = 10000.0, 0.02, 1e-6
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.95), 0.1, 1.0
# proxies.model.count_params for the 1m preset and a vocabulary of 257.
EXPECTED_MATMUL_PARAMS = 2 * (3 * 256 * 256 + 256 * 256 + 2 * 256 * 512 + 512 * 256) + 256 * 257  # 1,376,512
EXPECTED_TOTAL_PARAMS = EXPECTED_MATMUL_PARAMS + VOCAB * D_MODEL + N_LAYERS * 2 * D_MODEL + D_MODEL
# torch.optim.AdamW implementation: `fused` is the fastest on CPU. One AdamW step of one 1m proxy
# on one thread (AMD EPYC, torch 2.13): fused 1.4 ms, per-tensor loop 3.5 ms, foreach 6.2 ms (the
# foreach kernels have no vectorized CPU path). `--adamw` picks another one to compare.
DEFAULT_ADAMW = "fused"

assert EXPECTED_MATMUL_PARAMS == 1_376_512


# --------------------------------------------------------------------------------------------- model

def build_model_classes():
    """The model's classes (defined here so that importing this file does not import torch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def normal_linear(d_in, d_out, std, gen):
        lin = nn.Linear(d_in, d_out, bias=False)
        with torch.no_grad():
            lin.weight.normal_(0.0, std, generator=gen)
        return lin

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return F.rms_norm(x, (x.shape[-1],), self.scale, NORM_EPS)

    def apply_rope(x, cos, sin):
        """Rotate pairs (i, i + D/2) by position; x: (B, H, T, D), cos, sin: (T, D/2)."""
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Block(nn.Module):
        def __init__(self, gen):
            super().__init__()
            out_std = INIT_STD / math.sqrt(2 * N_LAYERS)
            self.attn_norm = RMSNorm(D_MODEL)
            self.wqkv = normal_linear(D_MODEL, 3 * D_MODEL, INIT_STD, gen)
            self.wo = normal_linear(D_MODEL, D_MODEL, out_std, gen)
            self.mlp_norm = RMSNorm(D_MODEL)
            self.w_gate_up = normal_linear(D_MODEL, 2 * D_FF, INIT_STD, gen)
            self.w_down = normal_linear(D_FF, D_MODEL, out_std, gen)

        def forward(self, x, cos, sin):
            b, t, d = x.shape
            hd = d // N_HEADS
            qkv = self.wqkv(self.attn_norm(x)).view(b, t, 3, N_HEADS, hd).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
            q, k = apply_rope(qkv[0], cos, sin), apply_rope(qkv[1], cos, sin)
            o = F.scaled_dot_product_attention(q, k, qkv[2], is_causal=True)
            x = x + self.wo(o.transpose(1, 2).reshape(b, t, d))
            gate, up = self.w_gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
            return x + self.w_down(F.silu(gate) * up)

    class Transformer(nn.Module):
        def __init__(self, seed: int):
            super().__init__()
            gen = torch.Generator().manual_seed(seed)
            self.embed = nn.Parameter(torch.empty(VOCAB, D_MODEL).normal_(0.0, INIT_STD, generator=gen))
            self.blocks = nn.ModuleList([Block(gen) for _ in range(N_LAYERS)])
            self.final_norm = RMSNorm(D_MODEL)
            self.head = normal_linear(D_MODEL, VOCAB, INIT_STD, gen)

        def forward(self, tokens_BxT):
            """Logits (B, T, V) of the next token at every position."""
            t = tokens_BxT.shape[-1]
            hd = D_MODEL // N_HEADS
            inv = 1.0 / (ROPE_BASE ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
            cos, sin = ang.cos(), ang.sin()
            x = F.embedding(tokens_BxT, self.embed)
            for block in self.blocks:
                x = block(x, cos, sin)
            return self.head(self.final_norm(x))

    def loss_fn(model, windows_BxT1):
        """Mean next-token cross-entropy (nats) over windows of T+1 tokens."""
        logits = model(windows_BxT1[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows_BxT1[:, 1:].reshape(-1))

    return Transformer, loss_fn


def matmul_params(model) -> int:
    return sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Linear")


def flops_per_token(seq_len: int) -> float:
    return 6.0 * EXPECTED_MATMUL_PARAMS + 12.0 * N_LAYERS * seq_len * D_MODEL


def make_optimizer(model, impl: str):
    import torch

    kw = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, **kw)


def make_step(loss_fn, mode: str):
    """`step(model, opt, windows) -> loss tensor`: forward, backward, clip, AdamW update."""
    import torch

    # One compiled graph serves every model of the process: the parameters are graph inputs.
    fwd = torch.compile(loss_fn) if mode == "compile" else loss_fn

    def step(model, opt, windows):
        opt.zero_grad(set_to_none=True)
        loss = fwd(model, windows)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP, foreach=True)
        opt.step()
        return loss

    return step


# ------------------------------------------------------------------------------------------- workers

def peak_matmul_flops(threads: int, sizes=(1024, 2048), reps: int = 5) -> float:
    """Best float32 FLOP/s of a square matrix product on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    best = 0.0
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        a @ b  # warm-up
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = max(best, 2.0 * n ** 3 / max(time.perf_counter() - t, 1e-9))
    return best


def worker(index: int, cores: list[int], threads: int, model_ids: list[int], args: dict, barrier, results):
    """Train this worker's proxies for warmup + steps steps; put its record (or its error) on `results`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops the workers
    try:
        os.sched_setaffinity(0, cores)
        import torch

        torch.set_num_threads(threads)
        Transformer, loss_fn = build_model_classes()
        step = make_step(loss_fn, args["mode"])
        b, t, n_steps = args["batch"], args["seq_len"], args["warmup"] + args["steps"]
        models, opts, data = [], [], []
        for m in model_ids:
            model = Transformer(args["seed"] + m)
            assert matmul_params(model) == EXPECTED_MATMUL_PARAMS, matmul_params(model)
            models.append(model)
            opts.append(make_optimizer(model, args["adamw"]))
            gen = torch.Generator().manual_seed(10_000 + args["seed"] + m)
            data.append(torch.randint(0, VOCAB, (n_steps, b, t + 1), generator=gen))
        loss, compile_error = None, None
        for s in range(args["warmup"]):
            for model, opt, d in zip(models, opts, data):
                try:
                    loss = step(model, opt, d[s])
                except Exception as e:  # a compiler failure: time eager code and say so
                    if args["mode"] != "compile" or compile_error is not None:
                        raise
                    compile_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                    step = make_step(loss_fn, "eager")
                    loss = step(model, opt, d[s])
        if loss is not None:
            loss.item()
        barrier.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(args["warmup"], n_steps):
            for model, opt, d in zip(models, opts, data):
                loss = step(model, opt, d[s])
        last = loss.item()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        results.put({"index": index, "tokens": args["steps"] * b * t * len(model_ids), "seconds": seconds,
                     "cpu_seconds": cpu_seconds, "last_loss": last, "compile_error": compile_error,
                     "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
    except BaseException as e:  # noqa: BLE001 - reported by the main process
        import traceback

        barrier.abort()
        results.put({"index": index, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


def split(n: int, parts: int) -> list[list[int]]:
    """0..n-1 in `parts` contiguous shares whose sizes differ by at most one."""
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = q + (i < r)
        out.append(list(range(start, start + size)))
        start += size
    return out


def run(args) -> dict:
    import multiprocessing as mp
    import queue

    cores = sorted(os.sched_getaffinity(0))
    processes = args.processes or len(cores)
    if args.n_proxies and args.n_proxies < processes:
        print(f"bench_torch: {args.n_proxies} proxies keep only {args.n_proxies} of {processes} processes busy; "
              f"running {args.n_proxies}", file=sys.stderr)
        processes = args.n_proxies
    args.n_proxies = args.n_proxies or processes
    threads = args.threads
    if processes * threads > len(cores):
        raise SystemExit(f"--processes {processes} x --threads {threads} needs {processes * threads} cores; "
                         f"this process may use {len(cores)}")
    shares = split(args.n_proxies, processes)
    spec = {k: getattr(args, k) for k in ("mode", "batch", "seq_len", "steps", "warmup", "seed", "adamw")}
    # spawn: fresh interpreters (torch's thread pools do not survive fork), started before this
    # process imports torch, so their ru_maxrss starts from a small parent.
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=worker, daemon=True,
                         args=(i, cores[i * threads:(i + 1) * threads], threads, shares[i], spec, barrier, results))
             for i in range(processes)]
    records = {}
    try:
        for p in procs:
            p.start()
        while len(records) < processes:
            try:
                r = results.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0) and i not in records]
                if dead:
                    raise RuntimeError(f"worker {dead[0]} exited with code {procs[dead[0]].exitcode}")
                continue
            if "error" in r:
                raise RuntimeError(f"worker {r['index']} failed: {r['error']}\n{r['traceback']}")
            records[r["index"]] = r
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)

    import torch

    peak = peak_matmul_flops(len(cores))
    rs = [records[i] for i in range(processes)]
    compile_errors = sorted({r["compile_error"] for r in rs if r["compile_error"]})
    mode = args.mode
    if compile_errors:
        mode = "eager"
        print(f"bench_torch: torch.compile failed ({compile_errors[0]}); the timed steps ran EAGER code "
              "(inductor needs a working C++ compiler for CPU code)", file=sys.stderr)
    tokens_per_s = sum(r["tokens"] / r["seconds"] for r in rs)
    model_flops = tokens_per_s * flops_per_token(args.seq_len)
    rec = {"framework": f"torch {torch.__version__}", "mode": mode, "n_proxies": args.n_proxies,
            "processes": processes, "threads": threads, "batch": args.batch, "seq_len": args.seq_len,
            "steps": args.steps, "params_per_proxy": EXPECTED_TOTAL_PARAMS, "tokens_per_s": round(tokens_per_s, 1),
            "model_flops_per_s": model_flops, "peak_matmul_flops_per_s": peak, "mfu": round(model_flops / peak, 4),
            "peak_rss_bytes": sum(r["peak_rss_bytes"] for r in rs),
            "adamw": args.adamw, "warmup": args.warmup,
            "tokens_per_cpu_s": round(sum(r["tokens"] for r in rs) / sum(r["cpu_seconds"] for r in rs), 1),
            "last_loss": [round(r["last_loss"], 4) for r in rs]}
    if compile_errors:
        rec["compile_error"] = compile_errors[0]
    return rec


# -------------------------------------------------------------------------------------------- checks

def check(args) -> int:
    """Initial loss near ln(V); 20 steps on one repeated batch lower it."""
    import torch

    torch.set_num_threads(args.threads)
    Transformer, loss_fn = build_model_classes()
    model = Transformer(args.seed)
    n_matmul = matmul_params(model)
    n_total = sum(p.numel() for p in model.parameters())
    assert n_matmul == EXPECTED_MATMUL_PARAMS, (n_matmul, EXPECTED_MATMUL_PARAMS)
    assert n_total == EXPECTED_TOTAL_PARAMS, (n_total, EXPECTED_TOTAL_PARAMS)
    gen = torch.Generator().manual_seed(args.seed)
    batch = torch.randint(0, VOCAB, (4, 65), generator=gen)
    with torch.no_grad():
        first = loss_fn(model, batch).item()
    print(f"initial loss {first:.4f} (ln {VOCAB} = {math.log(VOCAB):.4f})")
    ok = abs(first - math.log(VOCAB)) < 0.1
    # Causality: changing the last input token leaves the logits of earlier positions unchanged.
    with torch.no_grad():
        other = batch.clone()
        other[:, -2] = (other[:, -2] + 1) % VOCAB
        a, b = model(batch[:, :-1]), model(other[:, :-1])
        causal = torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6) and not torch.allclose(a[:, -1], b[:, -1])
    print(f"causal masking {'ok' if causal else 'BROKEN'}")
    step = make_step(loss_fn, "eager")
    opt = make_optimizer(model, args.adamw)
    losses = [step(model, opt, batch).item() for _ in range(20)]
    print("losses over 20 steps on one batch: " + " ".join(f"{x:.3f}" for x in losses))
    decreasing = losses[-1] < losses[0] - 0.5
    ok = ok and causal and decreasing
    print(f"params {n_total:,} (matmul {n_matmul:,}), flops/token at T={args.seq_len}: {flops_per_token(args.seq_len):,.0f}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=("eager", "compile"), default="eager")
    p.add_argument("--n-proxies", type=int, default=0,
                   help="proxies M, split evenly over the processes (0: one per process)")
    p.add_argument("--processes", type=int, default=0, help="worker processes, one pinned core set each (0: one per core)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (and pinned cores) per process")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones (compile happens here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adamw", choices=("fused", "foreach", "loop"), default=DEFAULT_ADAMW,
                   help="torch.optim.AdamW implementation")
    p.add_argument("--json", action="store_true", help="print one JSON record")
    p.add_argument("--check", action="store_true", help="check the model (initial loss, causality, learning) and exit")
    args = p.parse_args(argv)
    for name in ("threads", "batch", "seq_len", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("n_proxies", "processes", "warmup"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.mode == "compile" and args.warmup < 1:
        p.error("--mode compile needs --warmup >= 1 (the first step compiles)")
    try:
        if args.check:
            return check(args)
        try:
            rec = run(args)
        except RuntimeError as e:
            print(f"bench_torch: {e}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("bench_torch: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(rec))
    else:
        print(f"{rec['framework']} {rec['mode']}: M={rec['n_proxies']} on {rec['processes']} process(es) x "
              f"{rec['threads']} thread(s), batch {rec['batch']} x {rec['seq_len']}: "
              f"{rec['tokens_per_s']:,.0f} tokens/s, MFU {rec['mfu']:.3f} "
              f"(peak {rec['peak_matmul_flops_per_s'] / 1e9:.0f} GFLOP/s), peak RSS {rec['peak_rss_bytes'] / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
