"""The policy/reference/student decoder: configs, params, forward passes, HF checkpoints."""

from r1jax.models.configs import (
    Llama3RopeScaling,
    ModelConfig,
    forward_flops,
    get_config,
    list_configs,
    num_params,
)
from r1jax.models.hf import CheckpointError, load_hf, save_hf
from r1jax.models.sharding import batch_sharding, param_shardings, shard_params
from r1jax.models.transformer import (
    LAYER_MODES,
    abstract_params,
    continuation_logprobs,
    forward,
    forward_cached,
    hidden_states,
    init,
    init_cache,
    padding_positions,
    token_logprobs,
)

__all__ = [
    "LAYER_MODES", "CheckpointError", "Llama3RopeScaling", "ModelConfig", "abstract_params",
    "batch_sharding", "continuation_logprobs", "forward", "forward_cached", "forward_flops",
    "get_config", "hidden_states", "init", "init_cache", "list_configs", "load_hf", "num_params",
    "padding_positions", "param_shardings", "save_hf", "shard_params", "token_logprobs",
]
