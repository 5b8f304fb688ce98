"""XLA:CPU settings for training proxies, given as XLA_FLAGS (read once, when JAX starts its backend).

- YNNPACK fusions off (`--xla_cpu_experimental_ynn_fusion_type=`). With them on, XLA:CPU (jaxlib
  0.10) ran the 1m proxy's training step about 17% slower: its fused softmax and broadcasts are
  slow, and the dots it takes over gain nothing. Added only where this jaxlib knows the flag (an
  unknown flag aborts XLA) and the user has not set it.
- Workers: single-threaded Eigen and one host device per pinned core. With fewer proxies than
  devices, the spare devices split each proxy's batch (proxies.mesh).

Only the standard library is imported here: the flags must be set before JAX starts.
"""

from __future__ import annotations

import functools
import mmap
import os
from importlib.util import find_spec
from pathlib import Path

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"
DEVICE_COUNT = "--xla_force_host_platform_device_count"


@functools.lru_cache(maxsize=None)
def jaxlib_knows(flag: str) -> bool:
    """Whether the installed jaxlib's XLA defines `flag` (its name appears in the XLA library)."""
    spec = find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return False
    name = flag.lstrip("-").split("=")[0].encode()
    for root in spec.submodule_search_locations:
        for lib in sorted(Path(root).glob("*.so")):
            if lib.stat().st_size < 1_000_000:  # stubs that forward to the big library
                continue
            try:
                with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    if mm.find(name) >= 0:
                        return True
            except (OSError, ValueError):
                continue
    return False


def _name(flag: str) -> str:
    return flag.split("=")[0]


def cpu_flags(existing: str = "", *, single_thread: bool = False, devices: int = 0) -> str:
    """XLA_FLAGS for proxy training, keeping the user's own flags (and their own YNN setting).

    `single_thread`: Eigen on one thread; `devices` > 1: that many host devices (0: leave as is).
    Tokens without leading dashes are dropped: one stops XLA's flag parsing silently."""
    flags = [f for f in existing.split() if f.startswith("--")]
    replaced = set()
    if single_thread:
        replaced.add(_name(SINGLE_THREAD))
    if devices:
        replaced.add(DEVICE_COUNT)
    flags = [f for f in flags if _name(f) not in replaced]
    if single_thread:
        flags.append(SINGLE_THREAD)
    if devices > 1:
        flags.append(f"{DEVICE_COUNT}={devices}")
    if not any(_name(f) == _name(YNN_OFF) for f in flags) and jaxlib_knows(YNN_OFF):
        flags.append(YNN_OFF)
    return " ".join(flags)


def set_process_flags() -> None:
    """Give this process (and the processes it starts) the faster XLA:CPU settings; takes effect
    only if JAX has not started its backend yet."""
    os.environ["XLA_FLAGS"] = cpu_flags(os.environ.get("XLA_FLAGS", ""))
