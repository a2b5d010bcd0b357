"""Hugging Face checkpoints in and out: ``config.json`` plus single or sharded safetensors.

Loading reads each tensor through the safetensors library's lazy slices and builds the jax array
with ``jax.make_array_from_callback``: every device receives only its own shard, cast to the
requested dtype on the host, so a 7B checkpoint never needs a second host copy of itself.

A checkpoint is the decoder under one of two heads (``head``): "lm", a causal LM (the policy:
Qwen2ForCausalLM, LlamaForCausalLM), or "score", a one-label sequence classifier (a reward
model, `r1jax.reward_model`: Qwen2ForSequenceClassification, LlamaForSequenceClassification, which
transformers builds as the decoder without its LM head plus a bias-free ``score.weight`` [1, D]).
The params of a "score" checkpoint are the decoder's without ``lm_head`` and with
``score/kernel`` [D, 1].
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from safetensors import safe_open
from safetensors.numpy import save_file

from r1jax.models.configs import Llama3RopeScaling, ModelConfig
from r1jax.models.sharding import param_shardings
from r1jax.models.transformer import abstract_params, param_path

_ARCHITECTURES = {  # head -> transformers' class -> family
    "lm": {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"},
    "score": {"Qwen2ForSequenceClassification": "qwen2",
              "LlamaForSequenceClassification": "llama"},
}
_HEAD_KINDS = {"lm": "a causal LM (an LM head, no score head)",
               "score": "a reward model (a sequence classifier: a score head, no LM head)"}
_LOADABLE_DTYPES = {"F32", "BF16", "F16"}
# Tensors some checkpoints carry that the model recomputes or does not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_LAYER_TENSORS = {  # our path inside layers/i -> (HF name inside model.layers.i, transposed)
    "attn_norm/scale": ("input_layernorm.weight", False),
    "mlp_norm/scale": ("post_attention_layernorm.weight", False),
    **{f"attn/{p}_proj/kernel": (f"self_attn.{p}_proj.weight", True) for p in "qkvo"},
    **{f"attn/{p}_proj/bias": (f"self_attn.{p}_proj.bias", False) for p in "qkv"},
    **{f"mlp/{p}_proj/kernel": (f"mlp.{p}_proj.weight", True) for p in ("gate", "up", "down")},
}


class CheckpointError(ValueError):
    """A checkpoint that r1jax cannot load; the message names the file and the tensor or key."""


def _hf_name(path: str) -> tuple[str, bool]:
    """(HF tensor name, stored transposed) for one of our parameter paths."""
    if path == "embed/embedding":
        return "model.embed_tokens.weight", False
    if path == "final_norm/scale":
        return "model.norm.weight", False
    if path == "lm_head/kernel":
        return "lm_head.weight", True
    if path == "score/kernel":
        return "score.weight", True
    _, index, rest = path.split("/", 2)
    name, transposed = _LAYER_TENSORS[rest]
    return f"model.layers.{index}.{name}", transposed


def _rope_fields(hf: dict, config_path: str) -> tuple[float, Llama3RopeScaling | None]:
    """Rope theta and llama3 scaling from either transformers 4.x or 5.x config keys."""
    rope = dict(hf.get("rope_scaling") or {})
    rope.update(hf.get("rope_parameters") or {})
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0)))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind != "llama3":
        raise CheckpointError(f"{config_path}: rope type {kind!r} is not supported "
                              "(supported: default, llama3)")
    return theta, Llama3RopeScaling(
        float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
        int(rope["original_max_position_embeddings"]))


def _check_head(head: str) -> None:
    if head not in _ARCHITECTURES:
        raise ValueError(f"head {head!r} is not one of {tuple(_ARCHITECTURES)}")


def config_from_hf(hf: dict, config_path: str = "config.json", head: str = "lm") -> ModelConfig:
    """A ModelConfig from a transformers config.json dict of a checkpoint with ``head``; one with
    the other head is an error that says which it is."""
    _check_head(head)
    archs = hf.get("architectures") or []
    known = _ARCHITECTURES[head]
    family = next((known[a] for a in archs if a in known), None)
    if family is None:
        other = next((h for h, classes in _ARCHITECTURES.items() if h != head
                      and any(a in classes for a in archs)), None)
        if other:
            raise CheckpointError(f"{config_path}: {', '.join(archs)} is {_HEAD_KINDS[other]}, "
                                  f"not {_HEAD_KINDS[head]}")
        raise CheckpointError(f"{config_path}: unsupported architecture {archs}; supported: "
                              f"{', '.join(known)}")
    if hf.get("hidden_act", "silu") != "silu" or hf.get("mlp_bias") or hf.get("use_sliding_window"):
        raise CheckpointError(f"{config_path}: only silu MLPs without bias and full attention "
                              "are supported (hidden_act, mlp_bias, use_sliding_window)")
    try:
        theta, scaling = _rope_fields(hf, config_path)
        heads = hf["num_attention_heads"]
        return ModelConfig(
            family=family,
            vocab_size=hf["vocab_size"],
            d_model=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            ffn_dim=hf["intermediate_size"],
            rope_theta=theta,
            rms_eps=hf.get("rms_norm_eps", 1e-6),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=family == "qwen2" or bool(hf.get("attention_bias", False)),
            rope_scaling=scaling,
            max_position=hf.get("max_position_embeddings", 32_768),
        )
    except KeyError as e:
        raise CheckpointError(f"{config_path}: missing key {e.args[0]!r}") from None


def config_to_hf(cfg: ModelConfig, dtype, head: str = "lm", pad_id: int | None = None) -> dict:
    """config.json contents that transformers 4.x and 5.x both read the same way; ``pad_id``
    is written as pad_token_id when given (a sequence classifier scores a row at its last
    token that is not pad_token_id, and refuses batches without one)."""
    _check_head(head)
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope.update(rope_type="llama3", factor=s.factor, low_freq_factor=s.low_freq_factor,
                    high_freq_factor=s.high_freq_factor,
                    original_max_position_embeddings=s.original_max_position)
    arch = next(a for a, family in _ARCHITECTURES[head].items() if family == cfg.family)
    out = {
        "architectures": [arch],
        "model_type": cfg.family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.ffn_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": cfg.max_position,
        "rope_theta": cfg.rope_theta,  # transformers 4.x
        "rope_scaling": None if cfg.rope_scaling is None else rope,  # transformers 4.x
        "rope_parameters": rope,  # transformers 5.x
        "dtype": jnp.dtype(dtype).name,
    }
    if cfg.family == "llama":
        out.update(attention_bias=cfg.qkv_bias, mlp_bias=False)
    else:
        out.update(use_sliding_window=False)
    if head == "score":  # num_labels=1, as transformers writes it
        out.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    if pad_id is not None:
        out["pad_token_id"] = int(pad_id)
    return out


def _for_head(tree: dict, head: str, score) -> dict:
    """A decoder's params-shaped ``tree`` (abstract params, shardings) for ``head``: as it is for
    "lm"; for "score" without lm_head and with ``score`` as score/kernel."""
    if head == "lm":
        return tree
    return {**{k: v for k, v in tree.items() if k != "lm_head"}, "score": {"kernel": score}}


def _open(file: str):
    try:
        return safe_open(file, framework="numpy")
    except Exception as e:  # the library's messages do not name the file
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None


def _tensor_files(path: str) -> dict[str, str]:
    """HF tensor name -> safetensors file, from the index or the single file."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = {name: os.path.join(path, file) for name, file in weight_map.items()}
        for file in sorted(set(files.values())):
            if not os.path.exists(file):
                raise CheckpointError(f"{index} names {os.path.basename(file)}, which is missing")
        return files
    single = os.path.join(path, "model.safetensors")
    if not os.path.exists(single):
        raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")
    with _open(single) as f:
        return dict.fromkeys(f.keys(), single)


def _check_config_against_tensors(cfg: ModelConfig, files: dict[str, str],
                                  config_path: str) -> None:
    """config.json's layer count and embedding size against the tensors the checkpoint holds,
    read from their names and headers alone: before anything is traced or allocated (a config
    with far more layers than its files would take minutes to trace, and then fail)."""
    layers = {int(name.split(".")[2]) for name in files if name.startswith("model.layers.")}
    if not set(range(cfg.num_layers)) <= layers:  # more are unexpected tensors, named later
        raise CheckpointError(f"{config_path} says num_hidden_layers={cfg.num_layers}, but the "
                              f"checkpoint's tensors hold {len(layers)} layer(s)")
    name = "model.embed_tokens.weight"
    if name in files:
        with _open(files[name]) as handle:
            shape = list(handle.get_slice(name).get_shape())
        if shape != [cfg.vocab_size, cfg.d_model]:
            raise CheckpointError(f"{config_path} says vocab_size={cfg.vocab_size} and "
                                  f"hidden_size={cfg.d_model}, but {files[name]} holds {name} "
                                  f"of shape {shape}")


def load_hf(path: str, dtype=jnp.float32, mesh=None, *, head: str = "lm"):
    """(cfg, params) from an HF checkpoint directory with ``head`` (see the module docstring),
    cast to ``dtype``.

    With a mesh, every parameter is created with its partition-rule sharding; otherwise on the
    default device. Raises CheckpointError naming the file and tensor for an unsupported
    architecture, a missing, misshapen, wrongly typed or non-finite tensor, an unexpected one,
    or a config.json that does not describe the tensors (checked before anything is traced).
    Each file is opened per tensor and closed after it, so mapped pages of tensors already
    placed are not held while the rest load.
    """
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{path}: no config.json (expected an HF checkpoint directory)")
    with open(config_path) as f:
        cfg = config_from_hf(json.load(f), config_path, head)
    files = _tensor_files(path)
    _check_config_against_tensors(cfg, files, config_path)
    target = _for_head(abstract_params(cfg, dtype), head,
                       jax.ShapeDtypeStruct((cfg.d_model, 1), dtype))
    expected_names = {_hf_name(param_path(kp))[0]
                      for kp, _ in jax.tree_util.tree_leaves_with_path(target)}
    unexpected = sorted(n for n in files if n not in expected_names
                        and not n.endswith(_IGNORED_SUFFIXES)
                        and not (head == "lm" and cfg.tie_embeddings
                                 and n == "lm_head.weight"))
    if unexpected:
        raise CheckpointError(f"{path}: tensors this config does not use: {unexpected[:5]}")
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, target)
    else:  # the score head is a few numbers per label: replicated
        shardings = _for_head(param_shardings(cfg, mesh, dtype), head, NamedSharding(mesh, P()))

    def load(key_path, leaf, sharding):
        name, transposed = _hf_name(param_path(key_path))
        if name not in files:
            raise CheckpointError(f"{path}: tensor {name!r} is missing")
        file = files[name]
        with _open(file) as handle:
            lazy = handle.get_slice(name)
            shape, stored = tuple(lazy.get_shape()), lazy.get_dtype()
            expected = leaf.shape[::-1] if transposed else leaf.shape
            if stored not in _LOADABLE_DTYPES:
                raise CheckpointError(f"{file}: tensor {name!r} has dtype {stored}; "
                                      f"expected one of {sorted(_LOADABLE_DTYPES)}")
            if shape != tuple(expected):
                raise CheckpointError(f"{file}: tensor {name!r} has shape {list(shape)}, "
                                      f"expected {list(expected)} for this config")

            def shard(index):  # asarray(dtype=) copies only when the dtype changes
                values = (np.asarray(lazy[index[::-1]], dtype=leaf.dtype).T if transposed
                          else np.asarray(lazy[index], dtype=leaf.dtype))
                if not np.isfinite(values).all():
                    raise CheckpointError(f"{file}: tensor {name!r} holds NaN or infinity")
                return values

            return jax.make_array_from_callback(leaf.shape, sharding, shard)

    return cfg, jax.tree_util.tree_map_with_path(load, target, shardings)


def save_hf(cfg: ModelConfig, params, out_dir: str, max_shard_bytes: int = 4 << 30, *,
            head: str = "lm", pad_id: int | None = None):
    """Write config.json and safetensors (sharded with an index past ``max_shard_bytes``) of
    ``params``, a checkpoint with ``head`` (see the module docstring; ``pad_id``:
    `config_to_hf`)."""
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for key_path, value in jax.tree_util.tree_leaves_with_path(params):
        name, transposed = _hf_name(param_path(key_path))
        array = np.asarray(jax.device_get(value))
        tensors[name] = np.ascontiguousarray(array.T if transposed else array)
    dtype = params["embed"]["embedding"].dtype
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_to_hf(cfg, dtype, head, pad_id), f, indent=2)
    shards, size = [{}], 0
    for name in sorted(tensors):
        nbytes = tensors[name].nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    metadata = {"format": "pt"}  # transformers refuses safetensors without it
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out_dir, "model.safetensors"), metadata=metadata)
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(out_dir, file), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
             "weight_map": weight_map}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
