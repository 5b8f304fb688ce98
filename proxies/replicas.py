"""Data parallelism over pinned worker processes: one proxy group's batch split over several cores.

With fewer proxy groups than cores, a group gets k cores. Its k replicas are k worker processes,
one pinned single-device process per core, each taking 1/k of every proxy's batch. After each
backward pass they average their gradients through shared memory: every replica writes its flat
gradient vector into its own slot, they meet at a barrier, and every replica sums the slots in
rank order, so all apply the same update and hold bit-identical states. Every replica evaluates
(the same windows, the same results); rank 0 alone writes files (`leads`).

Why not the host devices of one process: XLA:CPU runs every host device of a process on one
shared thread pool, and a lone 1m proxy split over the two host devices of one process ran 15-20%
slower than the same two halves in two pinned processes (and jax.distributed's gloo all-reduce
between processes cost another 8%); see the README's proxy figures.

The barrier is a message over a socket pair to rank 0 and its answer: a system call on each side,
so every write to the slots before it is visible after it, and a dead peer is an EOF (an error
naming the replica), not a hang. Each message carries (tag, call) so replicas that disagree on
what they are training stop with an error instead of averaging unrelated gradients. The shared
memory is a memfd (or an unlinked temporary file) that the parent creates and hands down as a file
descriptor, so nothing is left behind when a run is killed.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import tempfile

import numpy as np

from regmix.errors import RegmixError

ENV = "REGMIX_REPLICA"  # "rank:world:memfd:sockfd[,sockfd...]" (rank 0 holds one socket per peer)
_MSG = struct.Struct("<qq")  # (tag, call)


class Replicas:
    """This process's place among the replicas of a group: `mean(x, tag)` averages x over them."""

    def __init__(self, rank: int, world: int, memfd: int, socks: list[socket.socket]):
        self.rank, self.world = rank, world
        self._fd, self._socks = memfd, socks
        self._map: mmap.mmap | None = None
        self._calls = 0

    def _slots(self, n: int) -> np.ndarray:
        """(2, world, n) float32 view of the shared memory: two alternating sets of slots (a
        replica writes the next call's slot while a slower one may still read this call's)."""
        need = 2 * self.world * n * 4
        if self._map is None or len(self._map) < need:
            if os.fstat(self._fd).st_size < need:  # every replica grows it; it never shrinks
                os.ftruncate(self._fd, need)
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self._fd, need)
        return np.ndarray((2, self.world, n), np.float32, self._map)

    def mean(self, x: np.ndarray, tag: int = 0) -> np.ndarray:
        """Mean of `x` (float32, same shape on every replica) over the replicas, summed in rank order."""
        flat = np.ascontiguousarray(x, np.float32).reshape(-1)
        slots = self._slots(flat.size)[self._calls % 2]
        slots[self.rank] = flat
        self._barrier(tag)
        out = slots[0] + slots[1] if self.world > 1 else slots[0].copy()
        for r in range(2, self.world):
            out += slots[r]
        out *= np.float32(1.0 / self.world)
        return out.reshape(np.shape(x))

    def _barrier(self, tag: int) -> None:
        msg = _MSG.pack(int(tag), self._calls)
        self._calls += 1
        if self.rank == 0:
            for peer, sock in enumerate(self._socks, start=1):
                got = _recv(sock, _MSG.size, peer)
                if got != msg:
                    raise RegmixError(f"replica {peer} is out of step with replica 0 "
                                      f"(tag, call {_MSG.unpack(got)} against {_MSG.unpack(msg)})")
            for sock in self._socks:
                sock.sendall(b"\x01")
        else:
            self._socks[0].sendall(msg)
            _recv(self._socks[0], 1, 0)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        for s in self._socks:
            s.close()


def _recv(sock: socket.socket, n: int, peer: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise RegmixError(f"replica {peer} stopped (its socket closed)")
        buf += part
    return buf


def from_env() -> Replicas | None:
    """The replica set this process was started in (with the `env` of a `Launch`), or None."""
    text = os.environ.get(ENV, "")
    if not text:
        return None
    rank, world, memfd, socks = text.split(":")
    fds = [int(s) for s in socks.split(",") if s]
    return Replicas(int(rank), int(world), int(memfd),
                    [socket.socket(fileno=fd) for fd in fds])


def leads(replicas: Replicas | None) -> bool:
    """Whether this process writes the results and checkpoints: it runs alone, or it is rank 0."""
    return replicas is None or replicas.rank == 0


def replica_count(cores: int, batch: int | None) -> int:
    """Replicas for a group given `cores`: the most that split `batch` into equal shares."""
    if batch is None:
        return 1
    return max(k for k in range(1, max(cores, 1) + 1) if batch % k == 0)


class Launch:
    """Shared memory and sockets for `world` replicas, made by the parent: `env[rank]` and
    `fds[rank]` are what replica `rank` is started with; `close()` drops the parent's copies once
    all replicas are started (each child keeps its own)."""

    def __init__(self, world: int):
        self.world = world
        self._memfd = _shared_fd()
        self._pairs = [socket.socketpair() for _ in range(world - 1)]
        for s in (s for p in self._pairs for s in p):
            s.set_inheritable(True)
        self.env, self.fds = [], []
        for rank in range(world):
            socks = [a.fileno() for a, _ in self._pairs] if rank == 0 else [self._pairs[rank - 1][1].fileno()]
            self.env.append({ENV: f"{rank}:{world}:{self._memfd}:{','.join(map(str, socks))}"})
            self.fds.append([self._memfd] + socks)

    def close(self) -> None:
        for s in (s for p in self._pairs for s in p):
            s.close()
        self._pairs = []
        if self._memfd >= 0:
            os.close(self._memfd)
            self._memfd = -1


def _shared_fd() -> int:
    """An inheritable descriptor of anonymous shared memory (memfd; else an unlinked temp file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("regmix-replicas", 0)
    else:
        fd, path = tempfile.mkstemp(prefix="regmix-replicas-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.unlink(path)
    os.set_inheritable(fd, True)
    return fd
