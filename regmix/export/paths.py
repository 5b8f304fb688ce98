"""Data paths per domain from a `{domain}` template, and the names a format can carry safely."""

from __future__ import annotations

import re
import string

from regmix.errors import RegmixError

# Megatron splits its blend on whitespace (`get_blend_from_list(f.read().split())`, megatron/training/
# utils), and the blend is also pasted on command lines: a path may hold only these characters.
MEGATRON_SAFE = re.compile(r"^[\w.,:@%+=/~-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_template(template: str) -> None:
    """A template is literal text with `{domain}` fields and nothing else (no attributes, no specs)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise RegmixError(f"--path-template '{template}': {err}; write '{{domain}}' where the name goes") from None
    fields = [(name, spec, conv) for _, name, spec, conv in parts if name is not None]
    bad = [f for f in fields if f != ("domain", "", None)]
    if bad:
        name, spec, conv = bad[0]
        shown = "{" + (name or "") + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        raise RegmixError(f"--path-template '{template}': only the field {{domain}} is allowed, got '{shown}'")
    if not fields:
        raise RegmixError(f"--path-template '{template}': needs {{domain}}, or every domain gets the same path")


def fill(template: str, domain: str) -> str:
    """The template with each `{domain}` replaced by the name (the name itself is never parsed)."""
    return "".join(text + (domain if name is not None else "") for text, name, _, _ in string.Formatter().parse(template))


def check_name(domain: str) -> None:
    """Names every format can hold: non-empty, no control characters, no surrounding blanks."""
    if not domain or domain != domain.strip():
        raise RegmixError(f"domain {domain!r}: names may not be empty or start or end with blanks")
    if _CONTROL.search(domain):
        raise RegmixError(f"domain {domain!r}: names may not hold control characters (tabs, newlines)")


def check_path(fmt: str, domain: str, path: str) -> None:
    """A filled-in path must not climb out of the template's folder, and Megatron's must split cleanly."""
    if any(part == ".." for part in re.split(r"[/\\]", path)):
        raise RegmixError(f"export {fmt}: domain '{domain}' gives the path '{path}', which climbs out with '..'")
    if fmt == "megatron" and not MEGATRON_SAFE.match(path):
        raise RegmixError(
            f"export megatron: domain '{domain}' gives the path '{path}', which Megatron's whitespace-split blend "
            "or a shell cannot carry (allowed: letters, digits, . , : @ % + = / ~ - _); rename the domain in the mixture file"
        )
