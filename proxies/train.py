"""Train many proxies at once: one jitted, vmapped step over a leading proxy axis.

Library API (the sweep and the demo's final runs both call it)::

    result = train_mixtures(
        store: TokenStore, domains: list[str], w_MxK: np.ndarray, *,
        model: str | ModelConfig = "1m", train: TrainConfig = TrainConfig(),
        eval_domains: list[str] | None = None,      # default: every store domain
        late_w_MxK: np.ndarray | None = None,       # schedule: switch to these mixtures ...
        late_fraction: float = 0.0,                 # ... for the last fraction of the steps
        schedule_M: list | None = None,             # per proxy: None or phases [(step | fraction, w_K)]
        same_init: bool = False,                    # every proxy starts from the same weights
        proxy_ids: np.ndarray | None = None,        # stable ids: seed the init and the data
        lr_scale_M: np.ndarray | None = None,       # per-proxy learning-rate multiplier
        checkpoint_dir: Path | None = None,         # resumable: orbax state + data position
        mesh: Mesh | None = None,                   # default: all devices (proxies.mesh)
        on_step: Callable[[int, int], None] | None = None,   # (steps done, tokens done)
        replicas: Replicas | None = None,           # one of several processes splitting the batches
        init_params=None,                           # start from these stacked params (fresh optimizer)
        snapshots: dict | None = None,              # {step: [(proxy m, folder)]}: save run m's state there
        start_M: list | None = None,                # per proxy a snapshot folder: start there, not at step 0
    ) -> TrainResult

`TrainResult` holds per-domain validation losses (nats per token) and bits per byte at the end
(`val_loss_MxE`, `bpb_MxE`, on `train.eval_windows`) and every `train.eval_every` steps (`curve_steps_S`,
`curve_loss_SxMxE`, `curve_bpb_SxMxE`, on `train.curve_windows`), the divergence flags, and the final stacked parameters.
A proxy whose loss turns NaN/inf is flagged (`diverged_M`, `steps_M` = the steps it completed);
its metrics are NaN and the others train on.

A snapshot is one run's whole training state (weights, optimizer, curves so far) at a step. A run
that starts from one (`start_M`) continues at that step: with the same seed, data and schedule up to
there, it is the run trained from step 0 (final runs upsampled at the end fork from the run without
upsampling: proxies.final).

Randomness: proxy p is initialised from `fold_in(key(train.seed), p)` (with `same_init`, every
proxy from that of id 0) and reads the data stream `(train.seed, p)` of `proxies.batches`, so a
proxy's results do not depend on the group, device or process that trains it (to float rounding
where a proxy's batch is split over devices: fewer proxies than devices, see proxies.mesh).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec as P

from proxies import checkpoint, cpu_kernels
from proxies import model as modellib
from proxies.batches import MixtureBatches, check_mixtures, resolve_schedule
from proxies.config import ModelConfig, TrainConfig, preset
from proxies.evaluate import Evaluator
from proxies.mesh import AXIS, BATCH_AXIS, batch_sharding, padded_size, proxy_mesh, proxy_sharding, to_host
from proxies.replicas import Replicas, leads
from regmix.config import to_dict
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError
from regmix.files import json_safe


class TrainState(NamedTuple):
    params: object  # nnx.State, leading proxy axis
    opt: object  # optax state, leading proxy axis
    lr_scale: jax.Array  # (M,)


@dataclasses.dataclass
class TrainResult:
    eval_domains: list[str]
    val_loss_MxE: np.ndarray
    bpb_MxE: np.ndarray
    curve_steps_S: np.ndarray
    curve_loss_SxMxE: np.ndarray
    curve_bpb_SxMxE: np.ndarray
    diverged_M: np.ndarray
    steps_M: np.ndarray
    tokens_M: np.ndarray
    seconds: float
    params: object = None  # final stacked parameters (nnx.State)


def optimizer(train: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup and cosine decay, global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, train.lr, max(train.warmup_steps, 1), max(train.steps, train.warmup_steps + 1),
        end_value=train.lr * train.min_lr_ratio)
    return optax.chain(optax.clip_by_global_norm(train.grad_clip),
                       optax.adamw(schedule, b1=train.b1, b2=train.b2, weight_decay=train.weight_decay))


def make_init(cfg: ModelConfig, vocab_size: int, train: TrainConfig):
    """`init(keys_M, lr_scale_M) -> TrainState` (vmapped; jit it with the output sharding)."""
    tx = optimizer(train)
    init_params = modellib.init_params(cfg, vocab_size)

    def init_one(key, lr_scale):
        params = init_params(key)
        return TrainState(params, tx.init(params), lr_scale)

    return jax.vmap(init_one)


def _grads(cfg: ModelConfig, vocab_size: int):
    """`grads(params, tokens_BxT1) -> (grads, loss)` of one proxy."""
    return lambda params, tokens: jax.value_and_grad(
        lambda p: modellib.loss(cfg, vocab_size, p, tokens))(params)[::-1]


def _update(train: TrainConfig):
    """`update(state, grads) -> state` of one proxy: the optimizer, scaled by its lr multiplier."""
    tx = optimizer(train)

    def update(state: TrainState, grads) -> TrainState:
        updates, opt = tx.update(grads, state.opt, state.params)
        updates = jax.tree.map(lambda u: u * state.lr_scale, updates)
        return TrainState(optax.apply_updates(state.params, updates), opt, state.lr_scale)

    return update


def make_train_step(cfg: ModelConfig, vocab_size: int, train: TrainConfig, mesh: Mesh | None = None):
    """Pure `step(state, tokens_MxBxT1) -> (state, loss_M)`; jit it donating `state`.

    With a `mesh` whose batch axis splits each proxy's batch, the step is a `shard_map`: every device
    takes the gradients of its share of the batch, and the shares are summed in one all-reduce of
    all gradients flattened into a single vector (XLA's own partitioning of the plain step reduces
    them one array at a time, and over gloo between processes each reduction costs a round trip)."""
    grads_of, update = _grads(cfg, vocab_size), _update(train)
    split = 1 if mesh is None else mesh.shape[BATCH_AXIS]

    def one(state: TrainState, tokens_BxT1):
        grads, loss = grads_of(state.params, tokens_BxT1)
        if split > 1:  # equal shares: the batch's mean is the mean of the shares' means
            flat, unravel = ravel_pytree((grads, loss))
            grads, loss = unravel(lax.psum(flat, BATCH_AXIS) / split)
        return update(state, grads), loss

    step = jax.vmap(one)
    if split == 1:
        return step
    # check_vma off: the custom VJPs' weight gradients vary over the batch axis until the psum.
    return jax.shard_map(step, mesh=mesh, in_specs=(P(AXIS), P(AXIS, BATCH_AXIS)), out_specs=P(AXIS),
                         check_vma=False)


def make_replica_steps(cfg: ModelConfig, vocab_size: int, train: TrainConfig):
    """The step split at the gradient exchange of replicas (proxies.replicas):
    `grads(params, tokens_MxBxT1) -> flat_MxG` (each proxy's gradients and loss in one float32
    vector) and `apply(state, mean_flat_MxG) -> (state, loss_M)`; jit `apply` donating `state`."""
    grads_of, update = _grads(cfg, vocab_size), _update(train)

    def flat_grads(params, tokens_BxT1):
        return ravel_pytree(grads_of(params, tokens_BxT1))[0]

    def apply(state: TrainState, flat_G):
        zeros = jax.tree.map(jnp.zeros_like, state.params), jnp.zeros((), jnp.float32)
        grads, loss = ravel_pytree(zeros)[1](flat_G)
        return update(state, grads), loss

    return jax.vmap(flat_grads), jax.vmap(apply)


def for_mesh(cfg: ModelConfig, mesh: Mesh) -> ModelConfig:
    """`cfg` as it runs on `mesh` (same results to float rounding, faster): on CPUs, the compiled
    kernels where they build (proxies.cpu_kernels; attention in pieces that keep scores in cache
    where they do not, or the head size has no kernel); elsewhere XLA's attention whole."""
    if mesh.devices.flat[0].platform != "cpu":
        return dataclasses.replace(cfg, attn_chunk=0, cpu_kernel=False)
    return dataclasses.replace(cfg, cpu_kernel=cpu_kernels.available())


@functools.lru_cache(maxsize=16)
def jitted(cfg: ModelConfig, vocab_size: int, train: TrainConfig, sharding):
    """(init, step) jitted once per configuration, so repeated calls share compiled work.

    The state stays split over the proxy axis (replicated over the batch axis, where the gradients
    of a proxy's batch shares are summed)."""
    init = jax.jit(make_init(cfg, vocab_size, train), out_shardings=sharding)
    step = jax.jit(make_train_step(cfg, vocab_size, train, sharding.mesh),
                   donate_argnames="state", out_shardings=sharding)
    return init, step


@functools.lru_cache(maxsize=16)
def jitted_replica(cfg: ModelConfig, vocab_size: int, train: TrainConfig, sharding):
    """(grads, apply) of `make_replica_steps`, jitted once per configuration."""
    grads, apply = make_replica_steps(cfg, vocab_size, train)
    return jax.jit(grads), jax.jit(apply, donate_argnames="state", out_shardings=sharding)


def replica_step(grads_fn, apply_fn, replicas: Replicas, tag: int):
    """`step(state, tokens) -> (state, loss_M)` of one replica: its share's gradients, averaged
    with the other replicas' through shared memory, then the same update on every replica."""

    def step(state: TrainState, tokens):
        mean = replicas.mean(np.asarray(grads_fn(state.params, tokens)), tag)
        return apply_fn(state, jnp.asarray(mean))

    return step


@functools.lru_cache(maxsize=16)
def jitted_start(train: TrainConfig, sharding):
    """`start(params_M, lr_scale_M) -> TrainState`: given weights, a fresh optimizer state."""
    tx = optimizer(train)
    return jax.jit(jax.vmap(lambda p, s: TrainState(p, tx.init(p), s)), out_shardings=sharding)


def params_digest(params) -> str:
    h = hashlib.sha256()
    for x in jax.tree.leaves(params):
        h.update(np.asarray(x).tobytes())
    return h.hexdigest()[:16]


def proxy_keys(seed: int, proxy_ids: np.ndarray, same_init: bool) -> jax.Array:
    base = jax.random.key(seed)
    ids = np.zeros_like(proxy_ids) if same_init else proxy_ids
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids, jnp.uint32))


def signature(**parts) -> str:
    """Hash of everything that determines a run's results (guards checkpoint reuse)."""
    text = json.dumps(parts, sort_keys=True, default=lambda o: np.asarray(o).tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_snapshot(folder: Path, step: int, state: TrainState, rec: dict, diverged_M, steps_M, m: int) -> None:
    """Run m's state and record at `step` (after its evaluation there) as a one-proxy checkpoint."""
    one = jax.tree.map(lambda x: np.asarray(jax.device_get(x[m:m + 1])), state)
    checkpoint.save(folder, step, one, {
        "step": step, "diverged": [bool(diverged_M[m])], "steps": [int(steps_M[m])],
        "curve_steps": list(rec["curve_steps"]), "curve_loss": [c[m:m + 1] for c in rec["curve_loss"]],
        "curve_bpb": [c[m:m + 1] for c in rec["curve_bpb"]]})


def _from_snapshots(folders: list, state: TrainState, sharding, mp: int, steps: int) -> tuple[TrainState, dict]:
    """The state stacked from one snapshot per proxy (all at one step; padded to `mp`), and the record
    to continue from."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype), state)
    found = []
    for folder in folders:
        got = checkpoint.restore(Path(folder), abstract, max_step=steps - 1)
        if got is None:
            raise RegmixError(f"{folder}: no snapshot to start from (train the run it forks from first)")
        found.append(got)
    if len({step for step, _, _ in found}) > 1 or len({json.dumps(r["curve_steps"]) for _, _, r in found}) > 1:
        raise RegmixError(f"start: snapshots of different steps ({', '.join(str(f) for f in folders)})")
    found += [found[-1]] * (mp - len(found))
    stacked = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *[s for _, s, _ in found])
    recs = [r for _, _, r in found]
    cat = lambda key: [sum((r[key][t] for r in recs), []) for t in range(len(recs[0]["curve_steps"]))]
    begin = {"step": found[0][0], "diverged": [r["diverged"][0] for r in recs], "steps": [r["steps"][0] for r in recs],
             "curve_steps": recs[0]["curve_steps"], "curve_loss": cat("curve_loss"), "curve_bpb": cat("curve_bpb")}
    return jax.device_put(stacked, sharding), begin


def train_mixtures(store: TokenStore, domains: list[str], w_MxK: np.ndarray, *, model="1m",
                   train: TrainConfig = TrainConfig(), eval_domains: list[str] | None = None,
                   late_w_MxK: np.ndarray | None = None, late_fraction: float = 0.0,
                   schedule_M: list | None = None, same_init: bool = False, proxy_ids: np.ndarray | None = None,
                   lr_scale_M: np.ndarray | None = None, checkpoint_dir: Path | None = None,
                   mesh: Mesh | None = None, on_step: Callable[[int, int], None] | None = None,
                   replicas: Replicas | None = None, init_params=None, snapshots: dict | None = None,
                   start_M: list | None = None) -> TrainResult:
    """Train one proxy per row of `w_MxK` (mixtures over `domains`); see the module docstring.

    `replicas` (proxies.replicas): this process is one of several that train the same proxies on
    equal shares of every batch; all return the same result, and rank 0 alone saves checkpoints.
    `schedule_M` (proxies.batches.resolve_schedule): proxy m trains on the phases schedule_M[m]
    (None: its row of `w_MxK` throughout), each phase's mixture from its start step on."""
    cfg = preset(model)
    for d in domains:
        if d not in store.domains:
            raise RegmixError(f"{store.path}: unknown domain '{d}' (known: {', '.join(store.domains)})")
    eval_domains = list(store.domains if eval_domains is None else eval_domains)
    w_MxK = check_mixtures(w_MxK, domains)
    m = len(w_MxK)
    ids_M = np.arange(m) if proxy_ids is None else np.asarray(proxy_ids, np.int64)
    scale_M = np.ones(m) if lr_scale_M is None else np.asarray(lr_scale_M, np.float64)
    rank, world = (0, 1) if replicas is None else (replicas.rank, replicas.world)
    if train.batch % world:
        raise RegmixError(f"batch {train.batch} does not split into {world} equal replica shares")
    share = slice(rank * train.batch // world, (rank + 1) * train.batch // world)
    # Pad the proxy axis to the mesh by repeating the last proxy; padded results are dropped.
    mesh = proxy_mesh(n_proxies=m, batch=train.batch // world) if mesh is None else mesh
    run_cfg = for_mesh(cfg, mesh)
    scorer = Evaluator(store, eval_domains, run_cfg, train)  # the result's windows; validates seq_len early
    curve_n = train.curve_windows_used
    evaluator = scorer if curve_n == train.eval_windows else Evaluator(store, eval_domains, run_cfg, train, curve_n)
    mp = padded_size(m, mesh)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], mp - m, axis=0)]) if mp > m else a
    late = None if late_w_MxK is None else pad(check_mixtures(late_w_MxK, domains, "late mixture"))
    phases = None
    if schedule_M is not None:
        if len(schedule_M) != m:
            raise RegmixError(f"schedule: {len(schedule_M)} schedules for {m} proxies")
        phases = [None if s is None else resolve_schedule(s, train.steps, domains, f"schedule {i}")
                  for i, s in enumerate(schedule_M)]
        phases += [phases[-1]] * (mp - m)
    batches = MixtureBatches(store, domains, pad(w_MxK), batch=train.batch, seq_len=train.seq_len,
                             steps=train.steps, seed=train.seed, proxy_ids=pad(ids_M),
                             block_steps=train.block_steps, late_w_MxK=late, late_fraction=late_fraction,
                             schedule_M=phases)
    sharding, data_sharding = proxy_sharding(mesh), batch_sharding(mesh)
    vocab = store.vocab_size
    init, step_fn = jitted(run_cfg, vocab, train, sharding)
    keys = proxy_keys(train.seed, pad(ids_M), same_init)
    state = init(keys, jnp.asarray(pad(scale_M), jnp.float32))
    if init_params is not None:  # continued training (proxies.branches): these weights, leading axis m
        start = jax.tree.map(lambda x: jnp.asarray(pad(np.asarray(x))), init_params)
        state = jitted_start(train, sharding)(start, state.lr_scale)
    begin = None
    if start_M is not None:  # snapshots of other runs at one step (see save_snapshot)
        if len(start_M) != m:
            raise RegmixError(f"start: {len(start_M)} snapshots for {m} proxies")
        state, begin = _from_snapshots(start_M, state, sharding, mp, train.steps)

    # final=, f=: the schedule's keys as checkpoints of earlier versions hold them (resumable)
    sig = signature(model=to_dict(cfg), train=to_dict(train), vocab=vocab, domains=domains,
                    eval_domains=eval_domains, w=w_MxK, final=late_w_MxK, f=late_fraction,
                    same_init=same_init, ids=ids_M, scale=scale_M, tokenizer=store.tokenizer_hash,
                    **({} if init_params is None else {"init": params_digest(init_params)}),
                    **({} if begin is None else {"start": [begin["step"], params_digest(state.params)]}),
                    **({} if phases is None else {"schedule": [None if p is None else [[s, w] for s, w in p]
                                                               for p in phases[:m]]}))
    if replicas is not None:  # the tag: replicas training different runs stop with an error
        step_fn = replica_step(*jitted_replica(run_cfg, vocab, train, sharding), replicas,
                               tag=int(sig[:15], 16))
    put = lambda step: jax.device_put(batches.get(step)[:, share], data_sharding)
    rec = {"signature": sig, "step": 0, "diverged": [False] * mp, "steps": [train.steps] * mp,
           "curve_steps": [], "curve_loss": [], "curve_bpb": [], "seconds": 0.0}
    if begin is not None:
        rec.update(begin, signature=sig, seconds=0.0)
    if checkpoint_dir is not None:
        found = checkpoint.restore(Path(checkpoint_dir), state, max_step=train.steps)
        if found is not None:
            _, state, rec = found
            if rec.get("signature") != sig:
                raise RegmixError(f"{checkpoint_dir}: checkpoint of a different run (refusing to resume)")

    diverged = np.asarray(rec["diverged"], bool)
    steps_M = np.asarray(rec["steps"], np.int64)
    tokens_per_step = train.batch * train.seq_len
    t0 = time.perf_counter() - rec["seconds"]

    def evaluate(step: int):
        loss_MxE, bpb_MxE = evaluator(state.params)
        loss_MxE[diverged], bpb_MxE[diverged] = np.nan, np.nan
        rec["curve_steps"].append(step)
        rec["curve_loss"].append(json_safe(loss_MxE.tolist()))  # the checkpoint's JSON record
        rec["curve_bpb"].append(json_safe(bpb_MxE.tolist()))

    def settle(done: int, loss_M) -> None:
        """Record the losses of step `done` (read one step late: the next step is already queued,
        so the devices never wait for Python between steps)."""
        loss_M = to_host(loss_M)
        bad = ~np.isfinite(loss_M) & ~diverged
        steps_M[bad] = done
        diverged[bad] = True
        if on_step is not None:
            on_step(done + 1, (done + 1) * tokens_per_step)

    step = rec["step"]
    if step == 0 and train.eval_every:
        evaluate(0)
    next_tokens = put(step) if step < train.steps else None
    pending = None
    while step < train.steps:
        state, loss_M = step_fn(state, next_tokens)
        if step + 1 < train.steps:  # built while the step runs
            next_tokens = put(step + 1)
        if pending is not None:
            settle(*pending)
        pending = (step, loss_M)
        step += 1
        evaluating = step == train.steps or (train.eval_every and step % train.eval_every == 0)
        saving = checkpoint_dir is not None and train.checkpoint_every and (
            step % train.checkpoint_every == 0 and step < train.steps) and leads(replicas)
        snapping = bool(snapshots) and step in snapshots and leads(replicas)
        if evaluating or saving or snapping:
            settle(*pending)
            pending = None
        if evaluating:
            evaluate(step)
        if snapping:
            for i, folder in snapshots[step]:
                save_snapshot(Path(folder), step, state, rec, diverged, steps_M, i)
        if saving:
            rec.update(step=step, diverged=diverged.tolist(), steps=steps_M.tolist(),
                       seconds=time.perf_counter() - t0)
            checkpoint.save(Path(checkpoint_dir), step, state, rec)
    if not rec["curve_steps"] or rec["curve_steps"][-1] != train.steps:
        evaluate(train.steps)

    curve_loss = np.asarray(rec["curve_loss"], np.float64)[:, :m]
    curve_bpb = np.asarray(rec["curve_bpb"], np.float64)[:, :m]
    val_loss, val_bpb = curve_loss[-1], curve_bpb[-1]
    if scorer is not evaluator:  # the curves ran on fewer windows: score the result on its own
        val_loss, val_bpb = (a[:m] for a in scorer(state.params))
        val_loss[diverged[:m]], val_bpb[diverged[:m]] = np.nan, np.nan
    diverged, steps_M = diverged[:m], steps_M[:m]
    return TrainResult(
        eval_domains=eval_domains, val_loss_MxE=val_loss, bpb_MxE=val_bpb,
        curve_steps_S=np.asarray(rec["curve_steps"], np.int64), curve_loss_SxMxE=curve_loss,
        curve_bpb_SxMxE=curve_bpb, diverged_M=diverged, steps_M=steps_M,
        tokens_M=steps_M * tokens_per_step, seconds=time.perf_counter() - t0,
        params=jax.tree.map(lambda x: x[:m], state.params))
