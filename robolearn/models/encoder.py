"""Observation groups with image terms: split the flat vector, encode each image with a CNN.

An observation group stays one flat float32 vector ``[..., D]`` everywhere (env, storage, rollout,
the exported graph's ``obs`` input); its layout (``obs_shapes``: term name -> shape, in order, as
the env's ``ObsLayout.shapes``) says which slices are images. A term with more than one axis is an
image ``(H, W)`` stored row-major (row 0 first) in its slice; every other term is a vector.

A reader of a group (the actor reads ``policy``, the critic ``critic_obs``) turns it into features:

* the vector terms, in layout order, are normalised by the group's running normaliser
  (:class:`~robolearn.models.normalizer.EmpiricalNormalizer`), whose statistics therefore have the
  vector terms' total width (the group's full width when it has no image, as before images
  existed, so older checkpoints load unchanged);
* each image term goes through its own CNN (:class:`ConvEncoder`, layers from ``policy.encoder``)
  as a 1-channel image, un-normalised: depth in metres is already well scaled (0 to a few
  metres), and per-pixel statistics would give the same distance, or the sensor's invalid value,
  a different input value in every pixel;
* the features are ``[normalised vectors, image 1 features, image 2 features, ...]``.

Each image term gets its own CNN (a second camera has other content and may have another shape),
and so does each reader: actor and critic are separate networks in every robolearn policy (no
value-loss gradient reaches the actor's CNN), and the exported actor carries only its own. A
reader whose group has no image term (e.g. an asymmetric critic on privileged vectors) has no
encoder: its features are the normalised group, exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robolearn.config import EncoderConfig

#: group -> term -> shape, in layout order (``{g: layout.shapes for g, layout in env.obs_layout.items()}``)
ObsShapes = Mapping[str, Mapping[str, Sequence[int]]]
#: reader -> the group it reads: ``{"actor": "policy", "critic": critic_obs}``
Readers = Mapping[str, str]


class ObsTerms:
    """The terms of one flat observation group: shapes in order, the image slices and the vector
    slices (consecutive vector terms merged into one run)."""

    def __init__(self, shapes: Mapping[str, Sequence[int]]):
        self.shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        self.images: dict[str, tuple[slice, tuple[int, ...]]] = {}
        self.vector_runs: list[slice] = []
        start = 0
        for name, shape in self.shapes.items():
            if not shape or any(d <= 0 for d in shape):
                raise ValueError(f"observation term {name!r}: expected a width or a shape of positive sizes, "
                                 f"got {shape}")
            width = math.prod(shape)
            if len(shape) > 1:
                if len(shape) != 2:
                    raise ValueError(f"observation term {name!r}: images are (H, W), got shape {shape}")
                self.images[name] = (slice(start, start + width), shape)
            elif self.vector_runs and self.vector_runs[-1].stop == start:
                self.vector_runs[-1] = slice(self.vector_runs[-1].start, start + width)
            else:
                self.vector_runs.append(slice(start, start + width))
            start += width
        self.size = start
        self.vector_width = sum(run.stop - run.start for run in self.vector_runs)

    def vectors(self, x: torch.Tensor) -> torch.Tensor:
        """The vector terms of ``x`` ``[..., size]`` in layout order, ``[..., vector_width]``
        (``x`` itself when the group has no image)."""
        if not self.images:
            return x
        if len(self.vector_runs) == 1:
            return x[..., self.vector_runs[0]]
        return torch.cat([x[..., run] for run in self.vector_runs], dim=-1)


def group_terms(obs_dims: Mapping[str, int], obs_shapes: ObsShapes | None) -> dict[str, ObsTerms]:
    """Each group's :class:`ObsTerms`; a group ``obs_shapes`` does not describe (``None``: none,
    e.g. a checkpoint from before images) is one vector term of its width."""
    terms = {}
    for group, dim in obs_dims.items():
        shapes = (obs_shapes or {}).get(group) or {group: (dim,)}
        terms[group] = ObsTerms(shapes)
        if terms[group].size != dim:
            raise ValueError(f"obs_shapes[{group!r}]: the terms add up to {terms[group].size} values, "
                             f"obs_dims[{group!r}] is {dim}")
    return terms


class ConvEncoder(nn.Module):
    """One image ``[B, H*W]`` (row-major) -> ``[B, features]``: conv layers with the activation,
    flatten, linear, activation. Orthogonal weights (gain √2) and zero biases, like the MLPs."""

    def __init__(self, term: str, shape: tuple[int, int], *, channels: Sequence[int], kernel_sizes: Sequence[int],
                 strides: Sequence[int], features: int, activation: str) -> None:
        from robolearn.models.actor_critic import build_activation  # at call time: actor_critic imports this module

        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        layers: list[nn.Module] = []
        height, width, in_channels = *self.shape, 1
        for out_channels, kernel, stride in zip(channels, kernel_sizes, strides):
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
            if height <= 0 or width <= 0:
                raise ValueError(f"policy.encoder: image term {term!r} of shape {self.shape} is too small for kernel "
                                 f"sizes {list(kernel_sizes)} with strides {list(strides)}")
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride), build_activation(activation, inplace=True)]
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.feature_map = (in_channels, height, width)
        self.project = nn.Sequential(nn.Linear(in_channels * height * width, features),
                                     build_activation(activation, inplace=True))
        self.out_dim = features
        for layer in (*self.conv, *self.project):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0))
                nn.init.zeros_(layer.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.reshape(-1, 1, *self.shape)  # [B, 1, H, W]: row-major, row 0 at the top
        return self.project(self.conv(images).flatten(1))


class ObsEncoder(nn.Module):
    """One reader's encoder of a group with image terms: raw ``[..., D]`` -> ``[..., out_dim]``
    (normalised vector terms, then each image term's CNN features). The group's normaliser is
    passed in (it belongs to the group, shared by its readers, and stays where checkpoints keep it)."""

    def __init__(self, terms: ObsTerms, encoder: EncoderConfig, activation: str) -> None:
        super().__init__()
        self.terms = terms
        self.obs_dim = terms.size
        self.cnns = nn.ModuleDict({
            name: ConvEncoder(name, shape, channels=encoder.channels, kernel_sizes=encoder.kernel_sizes,
                              strides=encoder.strides, features=encoder.features, activation=activation)
            for name, (_, shape) in terms.images.items()})
        self.out_dim = terms.vector_width + sum(cnn.out_dim for cnn in self.cnns.values())

    def forward(self, x: torch.Tensor, normalizer: nn.Module) -> torch.Tensor:
        lead = x.shape[:-1]
        parts = [normalizer(self.terms.vectors(x))] if self.terms.vector_width else []
        for name, cnn in self.cnns.items():
            pixels = x[..., self.terms.images[name][0]]
            parts.append(cnn(pixels).reshape(*lead, cnn.out_dim))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def build_obs_encoders(terms: Mapping[str, ObsTerms], readers: Readers, encoder: EncoderConfig | None,
                       activation: str) -> nn.ModuleDict:
    """reader -> :class:`ObsEncoder`, for the readers whose group has image terms (none: an empty
    dict, which adds nothing to the policy's ``state_dict``). ``encoder`` None: the default CNN."""
    encoder = encoder if encoder is not None else EncoderConfig()
    return nn.ModuleDict({reader: ObsEncoder(terms[group], encoder, activation)
                          for reader, group in readers.items() if terms[group].images})


def feature_dims(terms: Mapping[str, ObsTerms], readers: Readers, encoders: nn.ModuleDict) -> dict[str, int]:
    """reader -> the width of its features (the group's width when it has no image)."""
    return {reader: encoders[reader].out_dim if reader in encoders else terms[group].size
            for reader, group in readers.items()}


def encode_obs(x: torch.Tensor, normalizer: nn.Module, encoder: ObsEncoder | None) -> torch.Tensor:
    """A reader's features of its group's raw observations ``x`` ``[..., D]``."""
    return normalizer(x) if encoder is None else encoder(x, normalizer)
