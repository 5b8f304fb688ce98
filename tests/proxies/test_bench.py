"""`regmix bench proxies`: one JSON object with every documented field."""


from regmix.cli import main


def test_bench_cli_prints_one_json_object(capsys):
    import json

    code = main(["bench", "proxies", "--preset", "tiny", "--n-proxies", "2", "--batch", "2", "--seq-len", "16",
                 "--steps", "2", "--workers", "1", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("preset", "n_proxies", "params_per_proxy", "tokens_per_s", "model_flops_per_s",
                "peak_matmul_flops_per_s", "mfu", "peak_rss_bytes"):
        assert key in record
    assert record["tokens_per_s"] > 0 and 0 < record["mfu"] and record["peak_rss_bytes"] > 0
