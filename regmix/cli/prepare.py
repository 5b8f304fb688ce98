"""`regmix prepare`: tokenize a corpus folder (or the embedded demo corpus) into a token store."""

from __future__ import annotations

import argparse

from regmix.cli import command_parser
from regmix.corpus.prepare import prepare
from regmix.errors import RegmixError
from regmix.files import check_out, disk_full_is_an_error


def register(sub) -> None:
    p = command_parser(
        sub, "prepare",
        help="Tokenize a corpus (one folder per domain, RegMix train/valid layout, or 'demo') into a token store.",
        example="regmix prepare --corpus demo --out store --tokenizer bpe:8000",
    )
    p.add_argument("--corpus", required=True, help="corpus folder, or 'demo' for the embedded corpus")
    p.add_argument("--out", required=True, help="token store folder to write (re-runs reuse unchanged domains)")
    p.add_argument("--tokenizer", default="byte",
                   help="byte (default), bpe:VOCAB_SIZE (trained here on a sample), or PATH/tokenizer.json")
    p.add_argument("--valid-fraction", type=float, default=0.05,
                   help="share of documents held out when the layout has no validation files (default 0.05)")
    p.add_argument("--text-field", default="text", help="field holding the text in .jsonl/.parquet (default text)")
    p.add_argument("--seq-len", type=int, default=512,
                   help="training sequence length; each domain needs at least seq_len+1 tokens (default 512)")
    p.add_argument("--bpe-sample-mb", type=float, default=10.0, help="MB of text to train BPE on (default 10)")
    p.add_argument("--token-limit", action="append", default=[], metavar="DOMAIN=TOKENS",
                   help="at most TOKENS training tokens of DOMAIN: whole documents in file order (repeatable; "
                        "the validation split stays whole)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    with disk_full_is_an_error(args.out):  # a full disk is one line; what finished is kept
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    check_out(args.out, "folder")
    meta = prepare(args.corpus, args.out, tokenizer=args.tokenizer, valid_fraction=args.valid_fraction,
                   text_field=args.text_field, seq_len=args.seq_len,
                   bpe_sample_bytes=int(args.bpe_sample_mb * 1e6), progress=not args.no_progress,
                   token_limits=parse_token_limits(args.token_limit))
    print(format_table(meta))
    print(f"wrote {args.out}/meta.json ({meta['tokenizer']['kind']} tokenizer, vocab {meta['vocab_size']}, "
          f"{meta['dtype']}) in {meta['seconds']:.1f} s")
    return 0


def parse_token_limits(items: list[str]) -> dict[str, int]:
    """['code=160000', ...] -> {'code': 160000}; the values are checked by prepare."""
    limits = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or name in limits:
            raise RegmixError(f"--token-limit {item}: expected DOMAIN=TOKENS, each domain once")
        try:
            limits[name] = int(value.replace("_", ""))
        except ValueError:
            raise RegmixError(f"--token-limit {item}: token_limits.{name}: expected a positive number of tokens, "
                              f"got {value!r}") from None
    return limits


def format_table(meta: dict) -> str:
    """Domain table: tokens, bytes, documents, natural weight."""
    doms = meta["domains"]
    total = sum(d["train_tokens"] for d in doms.values()) or 1
    rows = [f"{'domain':<16}{'train_tokens':>14}{'valid_tokens':>14}{'train_bytes':>14}{'docs':>8}{'weight':>8}"]
    for name, d in doms.items():
        rows.append(f"{name:<16}{d['train_tokens']:>14,}{d['valid_tokens']:>14,}{d['train_bytes']:>14,}"
                    f"{d['documents']:>8,}{d['train_tokens'] / total:>8.3f}")
    return "\n".join(rows)
