"""File plumbing every stage shares: atomic writes, JSON without NaN, the folder lock, core counts.

A reader never sees a half-written file: text goes to a temporary file in the same folder, which is
then renamed over the target (`os.replace` is atomic on POSIX). The lock is an `flock` on
`<folder>/.lock`, released by the kernel when its process dies, so a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from regmix.errors import RegmixError


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path next to `path`, renamed over it when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(data: Any) -> Any:
    """The same data with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """JSON, NaN and infinities written as null, atomically."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n")


def clean_temp_files(folders, pattern: str = ".*.tmp") -> int:
    """Remove the temporary files `replacing` leaves behind when its process is killed mid-write
    (`.<name>.<random>.tmp`) from `folders`; call it holding the folder's lock. Returns how many went."""
    removed = 0
    for folder in folders:
        for path in Path(folder).glob(pattern):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """An OSError for a full disk or quota, or a library's error that wraps one (orbax, tensorstore)."""
    if isinstance(err, OSError) and err.errno in DISK_FULL:
        return True
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


@contextmanager
def disk_full_is_an_error(folder: str | Path):
    """A full disk while writing under `folder` becomes one line saying that what finished is kept (every
    write is atomic, so no finished file is damaged) and that the same command resumes."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err):
            raise
        where = getattr(err, "filename", None) or folder
        raise RegmixError(f"{where}: disk full (no space left on device); finished results are kept (in {folder}): "
                          "free some space and run the same command again to resume") from None


@contextmanager
def locked(folder: str | Path, what: str = "run"):
    """Exclusive lock on an output folder; a second process gets a one-line RegmixError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegmixError(f"{folder}: another {what} is running in this folder") from None
        yield


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_out(path: str | Path, kind: str, flag: str = "--out") -> Path:
    """Refuse, before any work, an output path that exists as the wrong kind or cannot be created.

    `kind` is "file" (a file is written at `path`) or "folder" (files are written inside it)."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise RegmixError(f"{flag} {path}: is a folder; give a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise RegmixError(f"{flag} {path}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RegmixError(f"{flag} {path}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                raise RegmixError(f"{flag} {path}: cannot create it in {parent} (no write permission)")
            break
    return path
