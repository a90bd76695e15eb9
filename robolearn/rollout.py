"""Rollout collection: a batched env driven by the policy, written into a :class:`RolloutStorage`.

:class:`TorchEnv` puts a numpy batched env (``robolearn.envs``) behind torch tensors on the
training device: one copy per step each way (pinned and packed on CUDA), nothing else leaves the
device. :func:`collect_rollout` is the loop the trainer (and the learner benchmark) uses; it makes
no host sync of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from robolearn.models import Policy
from robolearn.storage import RolloutStorage


class EnvStep(NamedTuple):
    obs: dict[str, torch.Tensor]  # next observations (finished envs already reset)
    rewards: torch.Tensor  # [N]
    dones: torch.Tensor  # [N] float: terminated or truncated
    truncated_ids: torch.Tensor | None  # indices of truncated envs, or None
    final_obs: dict[str, torch.Tensor] | None  # true last observations of the truncated envs
    info: dict[str, Any]


class StepEnv(Protocol):
    num_envs: int

    def step(self, actions: torch.Tensor) -> EnvStep: ...


class StepPacker:
    """One env step's host results in one flat float32 buffer, and views of its device copy.

    Layout (N envs, obs groups of widths D_g, k truncated envs)::

        [obs_g1 (N·D_1) | obs_g2 (N·D_2) | ... | rewards (N) | dones (N) | ids (k) | final obs (k·ΣD_g)]

    so the whole step (observations, rewards, dones, and the true last observations of the
    truncated envs) crosses to the device in a single copy of ``fixed + k · (1 + ΣD_g)`` floats.
    Env ids travel as float32 (exact below 2^24 envs).
    """

    def __init__(self, obs_dims: dict[str, int], num_envs: int, pin_memory: bool = False) -> None:
        if num_envs >= 2 ** 24:
            raise ValueError(f"num_envs={num_envs}: env ids travel as float32, at most 2^24 envs")
        self.obs_dims, self.num_envs = dict(obs_dims), num_envs
        width = sum(self.obs_dims.values())
        self.fixed = num_envs * (width + 2)
        self.row = width + 1
        self.host = torch.empty(self.fixed + num_envs * self.row, dtype=torch.float32, pin_memory=pin_memory)
        self._np = self.host.numpy()

    def pack(self, obs: dict[str, np.ndarray], rewards: np.ndarray | None = None, dones: np.ndarray | None = None,
             truncated_ids: np.ndarray | None = None, final_obs: dict[str, np.ndarray] | None = None) -> int:
        """Write a step into the host buffer; returns the number of floats used."""
        n, buf, offset = self.num_envs, self._np, 0
        for group, dim in self.obs_dims.items():
            buf[offset:offset + n * dim].reshape(n, dim)[:] = obs[group]
            offset += n * dim
        buf[offset:offset + n] = 0.0 if rewards is None else rewards
        buf[offset + n:offset + 2 * n] = 0.0 if dones is None else dones
        offset += 2 * n
        k = 0 if truncated_ids is None else len(truncated_ids)
        if k:
            buf[offset:offset + k] = truncated_ids
            offset += k
            for group, dim in self.obs_dims.items():
                buf[offset:offset + k * dim].reshape(k, dim)[:] = final_obs[group]
                offset += k * dim
        return offset

    def unpack(self, flat: torch.Tensor, num_truncated: int) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                                     torch.Tensor, torch.Tensor | None,
                                                                     dict[str, torch.Tensor] | None]:
        """Views of a packed step (``flat``: the buffer's device copy): obs, rewards, dones,
        truncated env ids (long) and their final obs (None when no env was truncated)."""
        n, offset, obs = self.num_envs, 0, {}
        for group, dim in self.obs_dims.items():
            obs[group] = flat[offset:offset + n * dim].view(n, dim)
            offset += n * dim
        rewards, dones = flat[offset:offset + n], flat[offset + n:offset + 2 * n]
        offset += 2 * n
        k, ids, final_obs = num_truncated, None, None
        if k:
            ids = flat[offset:offset + k].long()
            offset += k
            final_obs = {}
            for group, dim in self.obs_dims.items():
                final_obs[group] = flat[offset:offset + k * dim].view(k, dim)
                offset += k * dim
        return obs, rewards, dones, ids, final_obs


class TorchEnv:
    """A numpy batched env (SAME_STEP autoreset) seen through torch tensors on ``device``.

    On CPU the numpy arrays are wrapped without copying. On CUDA (``staged``) every step is one
    copy each way through pinned host buffers: the actions device->host (the one host sync per
    step: the simulator needs them), and the whole step result host->device, packed by a
    :class:`StepPacker` and copied asynchronously (``non_blocking``). Returned tensors are fresh
    device tensors (views of that step's copy), so a caller may keep them across steps.
    ``staged=True`` on CPU runs the same packing path (unpinned), for tests.
    """

    def __init__(self, env, device: torch.device, staged: bool | None = None):
        self.env, self.device = env, torch.device(device)
        self.num_envs = env.num_envs
        self.staged = self.device.type == "cuda" if staged is None else staged
        if self.staged:
            cuda = self.device.type == "cuda"
            obs_dims = {group: layout.size for group, layout in env.obs_layout.items()}
            self.packer = StepPacker(obs_dims, self.num_envs, pin_memory=cuda)
            action_dim = env.single_action_space.shape[0]
            self.actions_host = torch.empty((self.num_envs, action_dim), dtype=torch.float32, pin_memory=cuda)
            # set once the last host->device copy has read the pinned buffer
            self._copied = torch.cuda.Event() if cuda else None
            self._actions_ready = torch.cuda.Event() if cuda else None

    def to_device(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {group: torch.from_numpy(value).to(self.device, non_blocking=True) for group, value in obs.items()}

    def reset(self) -> dict[str, torch.Tensor]:
        obs = self.env.reset()[0]
        if not self.staged:
            return self.to_device(obs)
        self._host_free()
        return self._upload(self.packer.pack(obs), 0)[0]

    def step(self, actions: torch.Tensor) -> EnvStep:
        if not self.staged:
            return self._step_unstaged(actions)
        self.actions_host.copy_(actions, non_blocking=True)  # device -> pinned host
        if self._actions_ready is not None:
            self._actions_ready.record(torch.cuda.current_stream(self.device))
            self._actions_ready.synchronize()  # waits for this copy only, not for later work
        obs, reward, terminated, truncated, info = self.env.step(self.actions_host.numpy())
        ids = np.flatnonzero(truncated) if truncated.any() else None  # decided on the host: no device sync
        final_obs = {g: v[ids] for g, v in info["final_obs"].items()} if ids is not None else None
        self._host_free()
        length = self.packer.pack(obs, reward, terminated | truncated, ids, final_obs)
        obs_t, rewards, dones, truncated_ids, final_t = self._upload(length, 0 if ids is None else len(ids))
        return EnvStep(obs_t, rewards, dones, truncated_ids, final_t, info)

    def _host_free(self) -> None:
        """Wait until the previous host->device copy has read the pinned buffer (normally long done:
        the action copy of this step already waited behind it)."""
        if self._copied is not None:
            self._copied.synchronize()

    def _upload(self, length: int, num_truncated: int):
        """One host->device copy of the packed step (async from pinned memory on CUDA)."""
        flat = self.packer.host[:length].to(self.device, non_blocking=True, copy=True)
        if self._copied is not None:
            self._copied.record(torch.cuda.current_stream(self.device))
        return self.packer.unpack(flat, num_truncated)

    def _step_unstaged(self, actions: torch.Tensor) -> EnvStep:
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        truncated_ids = final_obs = None
        if truncated.any():  # decided on the host: no device sync
            ids = np.flatnonzero(truncated)
            truncated_ids = torch.from_numpy(ids).to(self.device)
            final_obs = self.to_device({g: v[ids] for g, v in info["final_obs"].items()})
        dones = torch.from_numpy(terminated | truncated).to(self.device, torch.float32)
        return EnvStep(self.to_device(obs), torch.from_numpy(reward).to(self.device), dones,
                       truncated_ids, final_obs, info)


@torch.inference_mode()
def collect_rollout(policy: Policy, env: StepEnv, storage: RolloutStorage, obs: dict[str, torch.Tensor],
                    state: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[dict[str, Any]]]:
    """Fill ``storage`` with ``storage.num_steps`` steps from ``obs`` and the policy ``state``;
    returns the next observation, the next state and the env's per-step infos.

    Bootstrap values (``next_values``): a truncated env gets V(final_obs) of its true last
    observation (evaluated on the truncated envs only, with their state after the step), a
    terminated env 0, and a running env V(s_{t+1}), which is the value the next step computes
    anyway. The state is stored at the rollout's start and reset for every env whose episode ended.
    """
    policy.eval()
    infos = []
    bootstrap = torch.zeros(env.num_envs, device=storage.device)
    storage.initial_state.copy_(state)
    for _ in range(storage.num_steps):
        step_out = policy.act(obs, state)
        state = step_out.state
        step = env.step(step_out.actions)
        bootstrap.zero_()
        if step.truncated_ids is not None:  # the state is [..., N, :]: take the truncated envs'
            bootstrap[step.truncated_ids] = policy.value(step.final_obs, state[..., step.truncated_ids, :])
        storage.add(obs, step_out.actions, step_out.log_prob, step_out.values, step_out.mean, step_out.std,
                    step.rewards, step.dones, bootstrap)
        infos.append(step.info)
        obs = step.obs
        state = policy.reset_state(state, step.dones)
    last_values = policy.value(obs, state)
    following = torch.cat([storage.values[1:], last_values.unsqueeze(0)])
    storage.next_values.mul_(storage.dones).add_((1.0 - storage.dones) * following)
    policy.train()
    return obs, state, infos
