"""The JAX side of regmix: many tiny proxy language models trained at once on sampled mixtures.

Modules: `config` (presets, typed configs), `kernels` (linear/attention with custom VJPs),
`model` (the transformer), `batches` (deterministic mixture windows), `train` (vmapped step,
`train_mixtures`: the library entry point), `evaluate` (per-domain loss, bits per byte), `mesh`
(proxy and batch axes), `checkpoint` (orbax), `sweep` (`regmix sweep`), `workers` (one pinned
process per core), `bench` (`regmix bench proxies`), `xlaflags` (XLA:CPU settings).

Importing this package sets XLA_FLAGS for faster XLA:CPU training (`proxies.xlaflags`; your own
flags are kept). That takes effect only if JAX has not started yet: import `proxies` before your
first JAX computation.
"""

from proxies.xlaflags import set_process_flags

set_process_flags()
