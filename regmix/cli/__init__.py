"""`regmix` command line: one module per command, each a thin wrapper over one library call.

A command module `regmix.cli.<name>` defines `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed namespace. Modules are discovered by name, so a command is
added by adding its module to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import warnings

from regmix import __version__
from regmix.errors import RegmixError

COMMANDS = ["prepare", "sample", "sweep", "merge", "fit", "predict", "optimize", "suggest", "transfer", "export",
            "report", "demo", "run", "bench"]
JAX_SIDE = ("jax", "flax", "optax", "orbax")  # installed by the `proxies` extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regmix",
        description="Find the data mixture for language-model pretraining.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `regmix COMMAND --help` for the flags and an example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"regmix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module_name = f"regmix.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"regmix: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        result = args.func(args)
    except RegmixError as err:
        message = " ".join(str(err).split())
        if len(message) > 300:  # a huge cell or name must not make a huge "one line"
            message = message[:240] + " ... " + message[-50:]
        print(f"regmix: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regmix: interrupted; finished results are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


def require_jax_side(command: str) -> None:
    """Fail at once, in one line, before any work, where the `proxies` extra is not installed."""
    missing = [name for name in JAX_SIDE if importlib.util.find_spec(name) is None]
    if missing:
        raise RegmixError(f"`regmix {command}` trains proxies and needs the JAX side ({missing[0]} is missing): "
                          "pip install 'regmix[proxies]'")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; a flag with a default shows it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add_cap_flags(p, budget_help: str = "tokens of the run, for repetition caps (with --tokens, --max-epochs)",
                  epochs_help: str = "repetition cap: weight * token budget <= max epochs * tokens") -> None:
    """--token-budget, --tokens and --max-epochs, as optimize, sample and export take them."""
    p.add_argument("--token-budget", type=float, help=budget_help)
    p.add_argument("--tokens", help="tokens per domain: a token store (folder or meta.json) or a {domain: count} file")
    p.add_argument("--max-epochs", type=float, help=epochs_help)


def check_cap_numbers(args) -> None:
    """--token-budget and --max-epochs, where given, are finite and > 0: one line, before any work."""
    for flag, value in (("--token-budget", args.token_budget), ("--max-epochs", args.max_epochs)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise RegmixError(f"{flag} must be a finite number > 0, got {value}")


def command_parser(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """Add a sub-command whose --help ends with an example."""
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=HelpFormatter,
    )


# top-level keys only one kind of config has: a pipeline config (regmix demo / run) or a sweep config (regmix sweep)
_KIND_KEYS = {"pipeline": ("corpus", "target", "final", "optimize", "fit", "prepare", "caps"),
              "sweep": ("store", "n_proxies", "eval_domains")}
_KIND_COMMANDS = {"pipeline": "`regmix run --config {p} --out DIR` (or `regmix demo --config {p}`)",
                  "sweep": "`regmix sweep --config {p} --out DIR`"}


def check_config_kind(path: str, expected: str) -> None:
    """A sweep config given to demo/run, or a pipeline config given to sweep, is named as such, with the command
    that reads it (instead of an 'unknown key' error about its first key)."""
    from regmix.config import load_tree, preset_path

    data = load_tree(preset_path(path))
    other = "sweep" if expected == "pipeline" else "pipeline"
    mine = [k for k in data if k in _KIND_KEYS[expected]]
    theirs = [k for k in data if k in _KIND_KEYS[other]]
    if theirs and not mine:
        raise RegmixError(f"{path}: a {other} config (it has '{theirs[0]}'), not a {expected} config: run it with "
                          + _KIND_COMMANDS[other].format(p=path))

