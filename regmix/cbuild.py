"""Compile C/C++ once per machine into regmix's cache, keyed by everything that shapes the binary.

Both compiled paths (LightGBM's trees as C, the proxies' CPU kernels) build through here; without a
compiler, or with REGMIX_NO_COMPILE set, `build` returns None and callers keep their portable code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

COMPILERS = {"c": ("CC", "cc", "gcc", "clang"), "c++": ("CXX", "c++", "g++", "clang++")}


def cache_dir() -> Path:
    """REGMIX_CACHE, else $XDG_CACHE_HOME/regmix (~/.cache/regmix); binaries go under compiled/."""
    root = os.environ.get("REGMIX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "regmix")
    return Path(root) / "compiled"


def compiler(language: str) -> str | None:
    env, *names = COMPILERS[language]
    for name in (os.environ.get(env), *names):
        if name and shutil.which(name):
            return name
    return None


def build(name: str, language: str, sources: dict[str, str], flags: list[str], libs: tuple[str, ...] = (),
          key: str = "", what: str = "compiled code") -> Path | None:
    """`<cache>/<name>-<hash>.so` from `sources` ({file name: text}), built unless cached; None if it cannot be."""
    cc = compiler(language)
    if cc is None or os.environ.get("REGMIX_NO_COMPILE"):
        return None
    digest = hashlib.sha256("\n".join([*sources.values(), *flags, cc, key]).encode()).hexdigest()[:24]
    target = cache_dir() / f"{name}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for file, text in sources.items():
            (Path(tmp) / file).write_text(text)
        out = Path(tmp) / f"{name}.so"
        compiled = [str(Path(tmp) / f) for f in sources if not f.endswith((".h", ".hpp"))]
        proc = subprocess.run([cc, *flags, "-o", str(out), *compiled, *libs], capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["no message"])[0]
            warnings.warn(f"compiling {what} failed ({first}); using the portable code")
            return None
        os.replace(out, target)  # atomic: several workers may build at the same time
    return target
