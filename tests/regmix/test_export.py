import json
import numpy as np
import pytest
import yaml

import consumer_schemas as cs
from regmix.cli import main
from regmix.errors import RegmixError
from regmix.export import FORMATS, Budget, ExportOptions, Mixture, Schedule, export, parse, read_mixture

WEIGHTS = {"web": 0.55, "code": 0.3, "books": 0.15, "math": 0.0}
LATE = {"web": 0.4, "code": 0.3, "books": 0.1, "math": 0.2}
TOKENS = {"web": 1e9, "code": 1e9, "books": 1e8, "math": 5e7}
OLMO = dict(global_batch_size=8, sequence_length=1024)
FULL = ExportOptions(budget=Budget(1e9, TOKENS, 4.0), **OLMO)


def one(fmt, opts=FULL, weights=WEIGHTS, columns=None):
    (file,) = export(Mixture(weights, columns or {}), fmt, opts)
    return file.text


def by_domain(fmt, stage, domains):
    """Parsed weights of one stage keyed by domain, whatever the format keys them by."""
    keys = {d: [d, f"train_{d}", f"/data/{d}_text_document", f"/data/{d}"] for d in domains}
    return {d: sum(stage.get(k, 0.0) for k in ks) for d, ks in keys.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_statically_and_as_a_schedule(fmt):
    (_, back), = parse(one(fmt), fmt)
    assert by_domain(fmt, back, WEIGHTS) == pytest.approx(WEIGHTS, abs=1e-12)
    opts = ExportOptions(budget=Budget(1e9, TOKENS, 4.0), schedule=Schedule(LATE, 0.25, 1000), **OLMO)
    files = export(Mixture(WEIGHTS), fmt, opts)
    stages = [s for f in files for s in parse(f.text, fmt)]
    assert len(stages) == 2 and len(files) == (1 if fmt in ("json", "levanter", "nanotron") else 2)
    assert [f.part for f in files] == ([""] if len(files) == 1 else ["base", "late"])
    assert by_domain(fmt, stages[1][1], LATE) == pytest.approx(LATE, abs=1e-12)


def test_hf_through_the_real_interleave_datasets():
    datasets = pytest.importorskip("datasets")
    from regmix.export.hf import interleave

    spec = json.loads(one("hf"))
    assert "math" not in spec["domains"] and spec["stopping_strategy"] == "first_exhausted"
    data = {d: datasets.Dataset.from_dict({"domain": [d] * 4000}) for d in WEIGHTS}
    for strategy in ("first_exhausted", "all_exhausted", "all_exhausted_without_replacement"):
        mixed = interleave(dict(spec, stopping_strategy=strategy), data)
        counts = {d: c / 3000 for d, c in zip(*np.unique(mixed[:3000]["domain"], return_counts=True))}
        for d, w in WEIGHTS.items():  # 3000 seeded draws: 4 binomial sd is at most 0.037
            assert counts.get(d, 0.0) == pytest.approx(w, abs=0.04), (strategy, d)
    streamed = interleave(spec, {d: ds.to_iterable_dataset() for d, ds in data.items()},
                          stopping_strategy="all_exhausted")
    assert sum(1 for _ in streamed) < 4000 * 3 / 0.15  # terminates: the zero-weight domain was left out


def test_olmo_is_current_olmo_core():
    data = yaml.safe_load(one("olmo"))["source_mixture_config"]
    cfg = cs.strict(cs.SourceMixtureDatasetConfig, data)
    assert cfg.requested_tokens == 1_000_000_000 and cfg.global_batch_size == 8 * 1024
    assert [s.source_name for s in cfg.source_list.sources] == ["web", "code", "books"]
    assert {s.max_repetition_ratio for s in cfg.source_list.sources} == {4.0}
    cs.olmo_build_checks(cfg, 1024, {d: int(t) for d, t in TOKENS.items()})
    with pytest.raises(RegmixError, match="--token-budget, --global-batch-size and --sequence-length"):
        one("olmo", ExportOptions())


def test_olmix_megatron_mosaic_levanter_nanotron_schemas():
    mix = yaml.safe_load(one("olmix"))["mix"]
    entries = {d: cs.strict(cs.MixEntry, e) for d, e in mix.items()}
    assert entries["web"].weight == 0.55 and entries["web"].repetition_factor == 4.0 and "math" not in entries
    prefixes, shares = cs.megatron_blend(one("megatron"))
    assert prefixes == [f"/data/{d}_text_document" for d in ("web", "code", "books")]
    assert shares == pytest.approx([0.55, 0.3, 0.15])
    streams = yaml.safe_load(one("mosaic"))["train_loader"]["dataset"]["streams"]
    assert cs.strict(cs.Stream, streams["code"]) == cs.Stream(local="/data/code", proportion=0.3)
    opts = ExportOptions(schedule=Schedule(LATE, 0.2, 1000), global_batch_size=256)
    (lev,) = export(Mixture(WEIGHTS), "levanter", opts)
    stages = cs.levanter_checks(cs.strict(cs.LmDataConfig, yaml.safe_load(lev.text)["data"]), 256)
    assert [s for s, _ in stages] == [0, 800] and stages[1][1] == LATE
    (nano,) = export(Mixture(WEIGHTS), "nanotron", opts)
    runs = [cs.strict(cs.DatasetStageArgs, s) for s in yaml.safe_load(nano.text)["data_stages"]]
    cs.nanotron_checks(runs)
    assert [r.start_training_step for r in runs] == [1, 801]
    assert runs[1].data.dataset.dataset_folder[-1] == "/data/math" and runs[1].data.dataset.dataset_weights[-1] == 0.2


def test_levanter_stage_moves_to_a_mixture_block():
    opts = ExportOptions(schedule=Schedule(LATE, 0.2, 1000), global_batch_size=100)  # a stage every 512 steps
    with pytest.warns(UserWarning, match="starts at step 512, not 800"):
        (lev,) = export(Mixture(WEIGHTS), "levanter", opts)
    cs.levanter_checks(cs.strict(cs.LmDataConfig, yaml.safe_load(lev.text)["data"]), 100)
    with pytest.raises(RegmixError, match="no stage boundary"):
        export(Mixture(WEIGHTS), "levanter", ExportOptions(schedule=Schedule(LATE, 0.2, 300), global_batch_size=100))


def test_litgpt_keys_match_regmix_trainer_files(tmp_path):
    columns = {d: f"train_the_pile_{d}" for d in WEIGHTS}
    config = yaml.safe_load(one("lit-gpt", columns=columns))
    assert config["valid"] == {f"valid_the_pile_{d}": 1.0 for d in WEIGHTS}
    for d in WEIGHTS:  # the files RegMix's preprocessing writes: <prefix>-<n>.bin
        (tmp_path / f"train_the_pile_{d}-0000000000.bin").write_bytes(b"")
        (tmp_path / f"train_the_pile_{d}_extra-0000000000.bin").write_bytes(b"")  # another domain's prefix
    found = cs.regmix_trainer_files(config, tmp_path)
    assert {k: len(v) for k, v in found.items()} == {f"train_the_pile_{d}": 1 for d in ("web", "code", "books")}


def test_budget_reaches_the_formats_with_fields():
    low = ExportOptions(budget=Budget(1e9, TOKENS, 0.5), **OLMO)
    sources = yaml.safe_load(one("olmo", low))["source_mixture_config"]["source_list"]["sources"]
    assert {s["max_source_fraction"] for s in sources} == {0.5} and "max_repetition_ratio" not in sources[0]
    with pytest.warns(UserWarning, match="'books' needs 1.50 epochs"):
        one("olmo", ExportOptions(budget=Budget(1e9, TOKENS), **OLMO))
    with pytest.warns(UserWarning, match="'books' would repeat 1.50 times"):
        data = json.loads(one("json", ExportOptions(budget=Budget(1e9, TOKENS, max_epochs=1.0))))
    assert data["domains"]["books"]["epochs"] == pytest.approx(1.5)


def test_schedule_json_splits_tokens_by_steps():
    opts = ExportOptions(budget=Budget(1e9, TOKENS, 4.0), schedule=Schedule(LATE, 0.2, 1000), **OLMO)
    data = json.loads(export(Mixture(WEIGHTS), "json", opts)[0].text)
    assert [p["start_step"] for p in data["schedule"]] == [0, 800]
    assert data["domains"]["math"]["tokens"] == pytest.approx(0.2 * 0.2 * 1e9)
    base, late = export(Mixture(WEIGHTS), "olmo", opts)
    tokens = [yaml.safe_load(f.text)["source_mixture_config"]["requested_tokens"] for f in (base, late)]
    assert tokens == [800_000_000, 200_000_000]


@pytest.mark.parametrize("template", ["{domain", "{dom}", "{}", "{domain.__class__}", "{domain!r}", "/data/x",
                                      "/data/{domain:>9}", "/data/../{domain}"])
def test_bad_path_templates_are_refused(template):
    with pytest.raises(RegmixError, match="--path-template|climbs out"):
        export(Mixture(WEIGHTS), "megatron", ExportOptions(path_template=template))


@pytest.mark.parametrize("fmt", ["json", "olmix", "lit-gpt"])
def test_path_template_refused_with_the_reason_where_there_are_no_paths(fmt):
    with pytest.raises(RegmixError, match=f"does not apply to {fmt}: "):
        export(Mixture(WEIGHTS), fmt, ExportOptions(path_template="/x/{domain}"))


@pytest.mark.parametrize("fmt", ["hf", "megatron", "mosaic", "olmo", "levanter", "nanotron"])
def test_path_template_applies_to_every_format_with_paths(fmt):
    opts = ExportOptions(path_template="s3://bucket/{domain}/v2", budget=FULL.budget, **OLMO)
    text = export(Mixture(WEIGHTS), fmt, opts)[0].text
    assert "s3://bucket/code/v2" in text and "/data/" not in text


ODD = ["with space", "quote's \"x\"", "ünïcode-数据", "web/en", "{domain}", "a:b", "tab\there", "..", " lead"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_domain_names_are_written_or_refused_in_one_line(fmt, tmp_path, capsys):
    refused = []
    for i, name in enumerate(ODD):
        mixture = tmp_path / f"m{i}.json"
        mixture.write_text(json.dumps({"weights": {name: 0.5, "plain": 0.5}}), encoding="utf-8")
        out = tmp_path / f"out{i}.{fmt}"
        # any exception but the one-line RegmixError escapes main() and fails the test with its traceback
        code = main(["export", str(mixture), "--format", fmt, "--out", str(out), "--token-budget", "1e6",
                     "--global-batch-size", "2", "--sequence-length", "8"])
        err = capsys.readouterr().err
        if code == 0:
            ((_, back),) = parse(out.read_text(encoding="utf-8"), fmt)
            assert sorted(back.values()) == pytest.approx([0.5, 0.5]), (fmt, name)
            assert any(name in key for key in back), (fmt, name, back)
        else:
            assert code == 2 and len(err.strip().splitlines()) == 1 and "regmix: error:" in err, (fmt, name, err)
            refused.append(name)
    assert {"tab\there", " lead"} <= set(refused)  # control characters and edge blanks, in every format
    assert ("with space" in refused) == (fmt == "megatron")  # Megatron splits its blend on whitespace
    assert (".." in refused) == (fmt in ("hf", "mosaic", "olmo", "levanter", "nanotron"))  # a whole path segment


def test_read_mixture_rejects_bad_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"weights": {"a": 0.5, "b": -0.5}}))
    with pytest.raises(RegmixError, match="weights.b: expected a non-negative number"):
        read_mixture(p)
    p.write_text(json.dumps({"weights": {"a": 0.5, "b": 0.2}}))
    with pytest.raises(RegmixError, match="sum to 0.7"):
        read_mixture(p)
    p.write_text("{")
    with pytest.raises(RegmixError, match="not valid JSON"):
        read_mixture(p)
    p.write_text(json.dumps({"weights": {"a": 0.5, "b": 0.5}, "columns": {"a": "train_x_a"}}))
    assert read_mixture(p).column("a") == "train_x_a" and read_mixture(p).column("b") == "b"


def test_numpy_weights_from_a_notebook_export_as_plain_numbers():
    weights = {d: np.float64(w) for d, w in WEIGHTS.items()}
    for fmt in FORMATS:
        (file,) = export(Mixture(weights), fmt, FULL)
        assert "numpy" not in file.text and "!!" not in file.text
    with pytest.raises(RegmixError, match="weights.web: expected a non-negative number"):
        Mixture({"web": np.nan, "code": 1.0})


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_noise_is_rounded_away_and_weights_still_sum_to_one(fmt):
    noisy = Mixture({"a": 0.17941999999999989, "b": 0.3, "c": 0.52058000000000011})
    late = {"a": 0.1, "b": 0.6, "c": 0.30000000000000004}
    opts = ExportOptions(budget=Budget(1e9, {"a": 1e9, "b": 1e9, "c": 1e9}, 4.0), schedule=Schedule(late, 0.1, 1000), **OLMO)
    for file in export(noisy, fmt, opts):
        assert "0.17941999999999989" not in file.text and "0.30000000000000004" not in file.text
        for _, weights in parse(file.text, fmt):
            assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)
            assert all(round(w, 6) == w for w in weights.values())
