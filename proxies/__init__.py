"""The JAX side of regmix: many tiny proxy language models trained at once on sampled mixtures.

Modules: `config` (presets, typed configs), `kernels` (linear/attention with custom VJPs),
`cpu_kernels` (the same by compiled C++ on CPUs), `model` (the transformer), `batches`
(deterministic mixture windows), `train` (vmapped step, `train_mixtures`: the library entry
point), `evaluate` (per-domain loss, bits per byte), `mesh` (proxy and batch axes), `replicas`
(one group's batches split over processes), `checkpoint` (orbax), `pool` (one pinned process per
core), `jobs` (the job runner of sweeps and final runs), `sweep` (`regmix sweep`), `final` (final
runs), `bench` (`regmix bench proxies`), `xlaflags` (XLA:CPU settings).

Importing this package sets XLA_FLAGS for faster XLA:CPU training (`proxies.xlaflags`; your own
flags are kept). That takes effect only if JAX has not started yet: import `proxies` before your
first JAX computation.
"""

from proxies.xlaflags import set_process_flags

set_process_flags()
