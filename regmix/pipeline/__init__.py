"""The whole method as resumable stages: prepare -> sample -> sweep -> fit -> optimize -> export ->
final -> report (`regmix demo` runs it on the embedded config, `regmix run --stage` one stage).

This is the orchestration floor: the only package besides the CLI that imports both the light core
(`regmix`) and the JAX side (`proxies`). `config` validates the YAML, `layout` knows where files go
and which stages are done, `stages` runs them, `results` reads what they wrote (the summary), and
`report` draws from the results; nothing below `stages` imports it.

Each stage writes its files under DIR/<stage>/ and, last, DIR/<stage>/done.json holding the seconds
it took and a key: the hash of the config sections it depends on (its own and every earlier
stage's). A stage whose done.json carries the current key is skipped; a stage without one (killed,
never run, or run with another config) is run again, and so is every later stage. The sweep and the
final runs resume inside the stage too (finished groups and jobs are kept).

The demo's target is the validation loss (nats per byte: the store is byte-level) on a domain held
out of training; the mean validation loss over the training domains is fitted and reported beside
it, with its own optimized mixture.
"""

from regmix.pipeline.config import PipelineConfig, load_pipeline_config
from regmix.pipeline.layout import STAGES, stage_key
from regmix.pipeline.stages import run_pipeline, run_stage

__all__ = ["STAGES", "PipelineConfig", "load_pipeline_config", "run_pipeline", "run_stage", "stage_key"]
