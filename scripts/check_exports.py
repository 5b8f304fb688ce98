"""Check every `regmix export` format against its real consumer library (maintainers; needs PyPI).

    python scripts/check_exports.py      # with regmix's dev venv; builds .venv-consumers and .venv-levanter once
    python scripts/check_exports.py --venv DIR --levanter-venv DIR2 --skip-install

Exports a 4-domain mixture (one zero weight) and a late-phase schedule with `regmix export`, exactly
as a user runs it, then loads every file in side virtualenvs holding the consumers (OLMo-core,
megatron-core, MosaicML Streaming, HF datasets, marin-levanter; nanotron and olmix where importable:
neither publishes a release with these configs on PyPI) through scripts/consumer_checks.py, and
prints a table of what each consumer accepted and the shares its own mixing code gave.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from regmix.cli import main as regmix

HERE = Path(__file__).resolve().parent
# Versions as checked; ai2-olmo-core 3.0.0 needs torch < 2.14. HF datasets runs in regmix's own venv (the dev
# extra has it): streaming 0.13 wants transformers < 5, which refuses the huggingface-hub datasets 5 needs.
TORCH_SIDE = ["torch==2.13.0", "torchvision==0.28.0", "ai2-olmo-core==3.0.0", "megatron-core==0.16.1",
              "mosaicml-streaming==0.13.0", "dacite"]
LEVANTER_SIDE = ["marin-levanter", "gitpython"]  # levanter imports git without declaring it
CONSUMER = {"hf": "regmix", "megatron": "torch", "mosaic": "torch", "olmo": "torch", "nanotron": "torch",
            "olmix": "torch", "levanter": "levanter"}
BASE = {"web": 0.55, "code": 0.3, "books": 0.15, "math": 0.0}
LATE = {"web": 0.4, "code": 0.3, "books": 0.1, "math": 0.2}
AVAILABLE = {d: 400_000 for d in BASE}
STEPS, FRACTION, BATCH, SEQ, BUDGET = 1000, 0.2, 16, 256, 1_000_000


def ensure_venv(path: Path, packages: list[str], skip: bool, pip_args: list[str]) -> Path:
    python = path / "bin" / "python"
    if skip or python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pip_args, *packages], check=True)
    return python


def export_all(work: Path) -> list[dict]:
    """Every format, static and as a schedule, through the CLI; the manifest of what each file should hold."""
    (work / "mixture.json").write_text(json.dumps({"weights": BASE}))
    (work / "late.json").write_text(json.dumps({"weights": LATE}))
    (work / "tokens.json").write_text(json.dumps(AVAILABLE))
    templates = {"olmo": str(work / "olmo" / "{domain}" / "*.npy"), "mosaic": str(work / "mds" / "{domain}")}
    jobs = []
    for fmt in CONSUMER:
        for label in ("static", "schedule"):
            out = work / "exports" / f"{fmt}-{label}.{'txt' if fmt == 'megatron' else 'yaml'}"
            args = ["export", str(work / "mixture.json"), "--format", fmt, "--out", str(out),
                    "--token-budget", str(BUDGET), "--tokens", str(work / "tokens.json"), "--max-epochs", "2",
                    "--global-batch-size", str(BATCH), "--sequence-length", str(SEQ)]
            if fmt in templates:
                args += ["--path-template", templates[fmt].replace("{domain}", f"{label}/{{domain}}")]
            if label == "schedule":
                args += ["--late", str(work / "late.json"), "--late-fraction", str(FRACTION), "--steps", str(STEPS)]
            if regmix(args) != 0:
                raise SystemExit(f"regmix export --format {fmt} ({label}) failed")
            native = fmt in ("levanter", "nanotron")
            files = [out] if label == "static" or native else [out.with_name(f"{out.stem}.{p}{out.suffix}")
                                                                 for p in ("base", "late")]
            for stage, weights in enumerate([BASE] if label == "static" else [BASE, LATE]):
                jobs.append({"format": fmt, "label": label if label == "static" else ("base", "late")[stage],
                             "files": [str(files[0] if native else files[stage])], "stage": stage if native else 0,
                             "weights": {d: w for d, w in weights.items() if w > 0},
                             "paths": paths(fmt, label, work), "available": AVAILABLE,
                             "global_batch_size": BATCH, "sequence_length": SEQ})
    return jobs


def paths(fmt: str, label: str, work: Path) -> dict[str, str]:
    layout = {"megatron": "/data/{domain}_text_document", "nanotron": "/data/{domain}",
              "olmo": str(work / "olmo" / label / "{domain}" / "*.npy"), "mosaic": str(work / "mds" / label / "{domain}")}
    return {d: layout.get(fmt, "{domain}").replace("{domain}", d) for d in BASE}


def table(rows: list[dict]) -> str:
    lines = ["| format | file | consumer | accepted | max abs share error | how |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("ok"):
            err = max(abs(w - got) for _, w, got in r["shares"])
            lines.append(f"| {r['format']} | {r['label']} | {r['consumer']} | yes | {err:.4f} | {r['detail']} |")
        else:
            state = "not installed" if r.get("ok") is None else "**rejected**"
            lines.append(f"| {r['format']} | {r['label']} | - | {state} | - | {r['error']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(".venv-consumers"))
    ap.add_argument("--levanter-venv", type=Path, default=Path(".venv-levanter"))
    ap.add_argument("--skip-install", action="store_true", help="use the venvs as they are")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--pip-arg", action="append", default=[],
                    help="extra pip install argument, e.g. --pip-arg=--isolated where a pip config's local CPU torch "
                         "wheel would pair with PyPI's torchvision ('operator torchvision::nms does not exist')")
    args = ap.parse_args()
    pythons = {"regmix": Path(sys.executable), "torch": ensure_venv(args.venv, TORCH_SIDE, args.skip_install, args.pip_arg),
               "levanter": ensure_venv(args.levanter_venv, LEVANTER_SIDE, args.skip_install, args.pip_arg)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = export_all(work)
        for side, python in pythons.items():
            mine = [j for j in jobs if CONSUMER[j["format"]] == side]
            manifest = work / f"{side}.json"
            manifest.write_text(json.dumps(mine))
            proc = subprocess.run([str(python), str(HERE / "consumer_checks.py"), str(manifest)], capture_output=True,
                                  text=True, cwd=work)
            got = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            if not got:
                print(proc.stderr[-3000:], file=sys.stderr)
            rows += got
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r.get("ok") is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
