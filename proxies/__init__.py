"""The JAX side of regmix: many tiny proxy language models trained at once on sampled mixtures.

Modules: `config` (presets, typed configs), `kernels` (linear/attention with custom VJPs),
`model` (the transformer), `batches` (deterministic mixture windows), `train` (vmapped step,
`train_mixtures`: the library entry point), `evaluate` (per-domain loss, bits per byte), `mesh`
(sharding the proxy axis), `checkpoint` (orbax), `sweep` (`regmix sweep`), `workers` (one
pinned process per core), `bench` (`regmix bench proxies`). Importing this package imports JAX;
`regmix` itself never does.
"""
