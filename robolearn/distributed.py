"""Data-parallel training over K ranks with ``torch.distributed`` (DD-PPO style), launched by ``torchrun``.

Every rank steps its own envs (seed ``seed + rank``) and holds a full copy of the model; ranks stay
in lock-step through collectives, and the parameters stay bit-identical:

* initial parameters and normaliser buffers are broadcast from rank 0 (so a resumed run or a
  fresh init starts equal everywhere);
* each minibatch, the gradients of all parameters (and the minibatch KL, which drives PPO's
  adaptive learning rate) are averaged across ranks in **one** flat all-reduce before clipping and
  the optimiser step, so every rank takes the same step at the same learning rate;
* advantage normalisation uses the mean and standard deviation of the minibatch over all ranks;
* observation-normaliser moments are merged exactly (Chan et al.'s parallel rule, float64, two
  all-reduces): every rank ends with the statistics of the concatenated data;
* episode metrics and ADR boundary results are gathered once per iteration; rank 0 owns the ADR
  state, records every rank's results in rank order and broadcasts the new ranges;
* every ``trainer.sync_check_interval`` iterations the flat parameters, normaliser buffers and
  learning rate are compared with rank 0's bit for bit; any difference is :class:`RanksDiverged`.

Why not ``DistributedDataParallel``: DDP synchronises gradients through hooks armed by its own
``forward()``, but our models are driven through ``act``/``evaluate``/``value`` and, for recurrent
policies, explicit state; wrapping them would need ``find_unused_parameters`` or a forward
dispatcher. The learner's networks are small (10^4-10^6 parameters), so one flat all-reduce per
minibatch costs little and DDP's bucketing/overlap would gain nothing; the explicit all-reduce also
carries the KL in the same message.

Backend: ``gloo`` on CPU, ``nccl`` on CUDA (``trainer.dist_backend: auto``). On CUDA each rank uses
``cuda:LOCAL_RANK``. On CPU each rank gets ``cpus // LOCAL_WORLD_SIZE`` torch threads and, when
``env.nthread`` is 0, as many physics threads: ranks that each try to use every core collapse.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

BACKENDS = ("auto", "gloo", "nccl")

#: set once this process has joined a process group (see :func:`exit_worker`)
joined_process_group = False


class DistributedError(RuntimeError):
    """A distributed set-up problem (one-line message)."""


class RanksDiverged(RuntimeError):
    """The ranks' parameters are no longer identical (message names the iteration and the ranks)."""


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int, cpus: int) -> int:
    """A configured torch thread count: ``0`` means half of ``cpus`` (at least 1)."""
    return threads if threads > 0 else max(1, cpus // 2)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != previous:
            torch.set_num_threads(previous)


def launched_by_torchrun() -> bool:
    """True inside a worker started by ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error. On CUDA a
    rank uses GPU ``LOCAL_RANK`` (modulo the GPUs present)."""
    if device not in ("auto", "cpu", "cuda"):
        raise DistributedError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DistributedError("device: cuda requested but torch.cuda.is_available() is False (use device=auto or cpu)")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto``: nccl for a CUDA device, gloo for CPU. ``nccl`` without CUDA is an error."""
    if backend not in BACKENDS:
        raise DistributedError(f"trainer.dist_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError("trainer.dist_backend: nccl needs CUDA, but the training device is cpu "
                               "(use dist_backend=auto or gloo, or device=cuda on a GPU machine)")
    if backend == "nccl" and not dist.is_nccl_available():
        raise DistributedError("trainer.dist_backend: nccl is not available in this torch build (use gloo)")
    return backend


class Distributed:
    """This process's place in a training job: ``rank`` of ``world_size``, its device and the
    collectives the learner needs. With ``world_size == 1`` every collective is a no-op (or returns
    its input), so single-process code paths need no special cases.

    Build it with :meth:`from_env` (reads torchrun's variables, initialises the process group) or
    :meth:`single`.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, local_world_size: int = 1,
                 device: torch.device | str = "cpu", backend: str | None = None) -> None:
        self.rank, self.world_size = rank, world_size
        self.local_rank, self.local_world_size = local_rank, local_world_size
        self.device = torch.device(device)
        self.backend = backend
        # tensors for collectives live here: CUDA for nccl, host memory for gloo
        self.comm_device = self.device if backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ construction
    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> "Distributed":
        return cls(device=device)

    @classmethod
    def from_env(cls, device: str = "auto", backend: str = "auto", timeout_s: float = 1800.0) -> "Distributed":
        """The job torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``
        (and ``MASTER_ADDR``/``MASTER_PORT``); a single process when they are absent or
        ``WORLD_SIZE`` is 1. Initialises the default process group with the backend for the device."""
        env = os.environ
        world_size = int(env.get("WORLD_SIZE", "1"))
        if world_size < 1:
            raise DistributedError(f"WORLD_SIZE must be positive, got {world_size}")
        rank, local_rank = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", str(world_size)))
        torch_device = resolve_device(device, local_rank)
        if world_size == 1:
            return cls(device=torch_device)
        chosen = choose_backend(backend, torch_device)
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        if not dist.is_initialized():
            kwargs: dict[str, Any] = {"backend": chosen, "timeout": datetime.timedelta(seconds=timeout_s)}
            if chosen == "nccl":
                kwargs["device_id"] = torch_device  # binds the communicator eagerly to this GPU
            dist.init_process_group(**kwargs)
        global joined_process_group
        joined_process_group = True
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise DistributedError(f"process group is rank {dist.get_rank()} of {dist.get_world_size()}, "
                                   f"but RANK={rank} WORLD_SIZE={world_size}")
        return cls(rank, world_size, local_rank, local_world_size, torch_device, chosen)

    # ------------------------------------------------------------------ facts
    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def cpu_share(self) -> int:
        """CPUs per rank on this node: the torch and physics threads each rank should use on CPU."""
        return max(1, cpu_count() // max(1, self.local_world_size))

    def configure_threads(self) -> int | None:
        """On CPU with several ranks per node, give each rank its share of the cores (torch
        intra-op threads); returns the share, or None when nothing was changed."""
        if not self.enabled or self.device.type != "cpu":
            return None
        share = self.cpu_share()
        torch.set_num_threads(share)
        return share

    def __repr__(self) -> str:
        return (f"Distributed(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank}, "
                f"device={self.device}, backend={self.backend})")

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ tensor collectives
    def _on_comm(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.device == self.comm_device else tensor.to(self.comm_device)

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (any device: staged through the comm device)."""
        return self._all_reduce_(tensor, dist.ReduceOp.SUM)

    def all_reduce_min_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise minimum of ``tensor`` over ranks, in place."""
        return self._all_reduce_(tensor, dist.ReduceOp.MIN)

    def _all_reduce_(self, tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        if not self.enabled:
            return tensor
        buffer = self._on_comm(tensor)
        dist.all_reduce(buffer, op=op)
        if buffer is not tensor:
            tensor.copy_(buffer)
        return tensor

    def all_reduce_mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean over ranks, in place. (gloo has no AVG: sum, then divide.)"""
        if not self.enabled:
            return tensor
        return self.all_reduce_sum_(tensor).div_(self.world_size)

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` with rank ``src``'s, in place."""
        if not self.enabled:
            return tensor
        buffer = self._on_comm(tensor)
        dist.broadcast(buffer, src=src)
        if buffer is not tensor:
            tensor.copy_(buffer)
        return tensor

    def sum_int(self, value: int) -> int:
        """Sum of a host integer over ranks (set-up only: a host sync)."""
        if not self.enabled:
            return value
        return int(self.all_reduce_sum_(torch.tensor([value], dtype=torch.int64, device=self.comm_device)).item())

    # ------------------------------------------------------------------ object collectives
    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (pickled; small host objects only)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self.comm_device if self.backend == "nccl" else None)
        return box[0]

    # ------------------------------------------------------------------ learner helpers
    def broadcast_module(self, module: nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers (normaliser statistics) into every rank's module."""
        if not self.enabled:
            return
        with torch.no_grad():
            tensors = [t for t in (*module.parameters(), *module.buffers())]
            by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
            for t in tensors:
                by_dtype.setdefault(t.dtype, []).append(t)
            for group in by_dtype.values():
                flat = self.broadcast_(torch.cat([t.detach().reshape(-1) for t in group]), src)
                for t, part in zip(group, flat.split([t.numel() for t in group])):
                    t.copy_(part.view_as(t))

    def all_reduce_gradients(self, parameters: Sequence[nn.Parameter], *extra: torch.Tensor) -> list[torch.Tensor]:
        """Average the gradients of ``parameters`` over ranks in one flat all-reduce, together with
        the scalars ``extra`` (returned averaged). A parameter without a gradient counts as zero."""
        if not self.enabled:
            return list(extra)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads] + [e.detach().reshape(-1).to(grads[0].dtype) for e in extra])
        self.all_reduce_mean_(flat)
        offset = 0
        for p, g in zip(parameters, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = g
            p.grad.copy_(flat[offset:offset + n].view_as(g))
            offset += n
        return [flat[offset + i].to(e.dtype) for i, e in enumerate(extra)]

    def mean_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased standard deviation of ``x`` over all ranks' samples (on device, no host sync)."""
        if not self.enabled:
            return x.mean(), x.std()
        x64 = x.detach().double()
        sums = torch.stack([x64.new_full((), float(x.numel())), x64.sum(), x64.square().sum()])  # no host->device copy
        count, total, squares = self.all_reduce_sum_(sums).unbind()
        mean = total / count
        var = (squares - count * mean.square()).clamp_min(0.0) / (count - 1.0)
        return mean.to(x.dtype), var.sqrt().to(x.dtype)

    def reduce_moments(self, count: float, mean: torch.Tensor, var: torch.Tensor, lo: torch.Tensor,
                       hi: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Merge every rank's sample moments (count, mean, population variance) and extremes (min,
        max) into those of the concatenated samples, exactly (float64): the global mean first,
        then M2 = Σ_r n_r · (var_r + (mean_r − mean)²); min and max by one MIN reduction of
        [min, -max]."""
        mean64, var64 = mean.detach().double(), var.detach().double()
        n = torch.full((), float(count), dtype=torch.float64, device=mean.device)
        if not self.enabled:
            return n, mean64, var64, lo, hi
        first = self.all_reduce_sum_(torch.cat([n.reshape(1), mean64 * n]))
        total = first[0]
        global_mean = first[1:] / total.clamp_min(1.0)
        m2 = self.all_reduce_sum_(n * (var64 + (mean64 - global_mean).square()))
        extremes = self.all_reduce_min_(torch.cat([lo, -hi]))
        return total, global_mean, m2 / total.clamp_min(1.0), extremes[:lo.numel()], -extremes[lo.numel():]

    def flat_state(self, module: nn.Module, *extra: torch.Tensor) -> torch.Tensor:
        """Parameters, floating-point buffers and ``extra`` as one float64 vector (for the sync check)."""
        tensors = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point()), *extra]
        return torch.cat([t.detach().reshape(-1).double() for t in tensors])

    def check_identical(self, module: nn.Module, iteration: int, *extra: torch.Tensor) -> None:
        """Raise :class:`RanksDiverged` on every rank unless every rank's parameters, buffers and
        ``extra`` equal rank 0's bit for bit."""
        if not self.enabled:
            return
        mine = self.flat_state(module, *extra)
        reference = self.broadcast_(mine.clone(), 0)
        diff = (mine - reference).abs().max() if mine.numel() else mine.new_zeros(())
        equal = torch.equal(mine, reference)
        report = self.all_gather_object((equal, float(diff)))
        bad = [(rank, d) for rank, (ok, d) in enumerate(report) if not ok]
        if bad:
            ranks = ", ".join(f"rank {rank} (max abs diff {d:.3g})" for rank, d in bad)
            raise RanksDiverged(f"parameters differ across ranks at iteration {iteration}: {ranks} vs rank 0; "
                                "the ranks no longer train one policy (non-deterministic kernels or mixed hardware?)")


def exit_worker(code: int) -> None:
    """End a process that joined a process group, skipping interpreter finalisation.

    With gloo, once ``torch._dynamo`` is imported (creating any optimiser imports it) the default
    process group stays referenced after :func:`torch.distributed.destroy_process_group`, so its
    ``pt_gloo_runloop`` threads outlive Python; a thread still releasing the last collective's
    tensors then takes the GIL during finalisation and aborts the process (``terminate called
    without an active exception``, exit -6) after training finished: 4 runs in 52 of the 2-rank test on a
    loaded 2-core machine. Logs and checkpoints are closed by then, so flush and leave.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def merge_episode_lists(parts: Iterable[dict[str, list]]) -> dict[str, list]:
    """Concatenate per-rank ``{metric: [values]}`` dicts in rank order."""
    out: dict[str, list] = {}
    for part in parts:
        for key, values in part.items():
            out.setdefault(key, []).extend(values)
    return out


def torchrun_command(nproc: int, argv: Sequence[str], python: str | None = None,
                     module: str | None = "robolearn") -> list[str]:
    """The ``torchrun`` command line (as ``python -m torch.distributed.run``, the same program) that
    runs ``python -m <module> <argv>`` (``module=None``: the script ``argv[0]``) on ``nproc`` local
    ranks; ``--standalone`` gives a one-node rendezvous on a free local port."""
    import sys

    if nproc < 1:
        raise DistributedError(f"--nproc must be positive, got {nproc}")
    program = ["-m", module, *argv] if module is not None else list(argv)
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc_per_node={nproc}", *program]
