"""Partition rules for the decoder's parameters on a ``Mesh(("data", "fsdp", "tensor"))``.

One table for the whole family (Qwen2 and Llama share parameter names): matrices are split over
``fsdp`` on their model-width side and over ``tensor`` on their head/MLP/vocabulary side (the
Megatron layout: column-parallel q/k/v/gate/up, row-parallel o/down); vectors that live on the
head side follow ``tensor``; norms are replicated. A dimension that the mesh axis does not divide
is left unsplit on that axis, so every named config runs on every mesh shape.
"""

import re

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.models.configs import ModelConfig
from r1jax.models.transformer import abstract_params, param_path

BATCH_AXES = ("data", "fsdp")

_RULES = (
    (r"embed/embedding", P("tensor", "fsdp")),
    (r"attn/(q|k|v)_proj/kernel", P("fsdp", "tensor")),
    (r"attn/(q|k|v)_proj/bias", P("tensor")),
    (r"attn/o_proj/kernel", P("tensor", "fsdp")),
    (r"mlp/(gate|up)_proj/kernel", P("fsdp", "tensor")),
    (r"mlp/down_proj/kernel", P("tensor", "fsdp")),
    (r"lm_head/kernel", P("fsdp", "tensor")),
    (r"norm/scale", P()),
)


def param_spec(path: str, shape, mesh) -> P:
    """The PartitionSpec of the parameter at ``path`` ("layers/3/attn/q_proj/kernel")."""
    for pattern, spec in _RULES:
        if re.search(pattern, path):
            return P(*(axis if axis and dim % mesh.shape[axis] == 0 else None
                       for axis, dim in zip(spec, shape)))
    raise ValueError(f"no partition rule matches parameter {path!r}")


def param_shardings(cfg: ModelConfig, mesh, dtype=None):
    """A tree of NamedSharding shaped like the params of ``cfg``."""
    return jax.tree_util.tree_map_with_path(
        lambda kp, x: NamedSharding(mesh, param_spec(param_path(kp), x.shape, mesh)),
        abstract_params(cfg) if dtype is None else abstract_params(cfg, dtype),
    )


def shard_params(cfg: ModelConfig, params, mesh):
    """Place (or re-place) params with their shardings on ``mesh``."""
    return jax.device_put(params, param_shardings(cfg, mesh))


def batch_sharding(mesh, ndim: int = 2, axis: int = 0) -> NamedSharding:
    """Dimension ``axis`` (the batch) over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(*([None] * axis), BATCH_AXES, *([None] * (ndim - axis - 1))))
