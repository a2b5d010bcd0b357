"""A policy from wherever it lives: an experiment's ``model`` section, an HF checkpoint
directory, or an r1jax workdir. The one loader of the RL job, the toy world's base model and
``python -m r1jax.evaluate``.

    cfg, params = load_policy(config.model, mesh=mesh)        # HF hf_path, else named + init_seed
    cfg, params = load_policy("runs/aha_tiny", mesh=mesh)     # the workdir's latest policy
    cfg, params = load_policy("runs/aha_tiny", step=100)      # its policy at step 100
    cfg, params = load_policy("path/to/Qwen2.5-Math-1.5B")    # config.json + *.safetensors
    tokenizer = load_tokenizer(tokenizer_source("runs/aha_tiny"))   # the one it was trained with
"""

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from r1jax import models
from r1jax.checkpoint import Checkpointer
from r1jax.mesh import make_mesh
from r1jax.models.hf import config_from_hf


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def model_config(model) -> models.ModelConfig:
    """The ModelConfig a ``model`` section names: its HF checkpoint's config.json (``hf_path``),
    else the named config (``name``), its vocabulary resized when ``vocab_size`` is set."""
    if model.get("hf_path"):
        path = Path(model["hf_path"]) / "config.json"
        cfg = config_from_hf(_read_json(path), str(path))
        if model.get("name"):
            check_named_model(cfg, model["name"], path)
        return cfg
    if model.get("name"):
        return models.get_config(model["name"], **(
            {"vocab_size": model["vocab_size"]} if model.get("vocab_size") else {}))
    raise ValueError("the model section names no model (model.name or model.hf_path)")


def check_named_model(cfg: models.ModelConfig, name: str, path) -> None:
    """A checkpoint must be the model the experiment names (its settings were chosen for it):
    every architecture field must agree but max_position, which releases of the same weights
    set differently (Qwen2.5-Math 4,096, DeepSeek-R1-Distill-Qwen 131,072)."""
    named = dataclasses.replace(models.get_config(name), max_position=cfg.max_position)
    differ = [f"{f.name} {getattr(cfg, f.name)} (named: {getattr(named, f.name)})"
              for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(named, f.name)]
    if differ:
        raise ValueError(f"{path} is not the model the config names ({name!r}): "
                         f"{', '.join(differ)}. Point model.hf_path at a {name} checkpoint, or "
                         f"set model.name to the checkpoint's model (or '' to skip this check)")


def check_tokenizer(cfg: models.ModelConfig, tokenizer, source) -> None:
    """Every id the tokenizer can produce, its special ids included, needs an embedding row (a
    model may have more rows than the tokenizer has ids: padded vocabularies; fewer would index
    past the embedding)."""
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer {source} has {tokenizer.vocab_size} ids but the model's "
                         f"embedding has {cfg.vocab_size} rows: they are not a pair")
    for role in ("bos_id", "eos_id", "pad_id"):
        token_id = getattr(tokenizer, role)
        if token_id is not None and not 0 <= token_id < cfg.vocab_size:
            raise ValueError(f"the tokenizer {source}'s {role} {token_id} is outside the "
                             f"model's {cfg.vocab_size}-row embedding: they are not a pair")


def _is_workdir(path: Path) -> bool:
    return (path / "checkpoints").is_dir()


def _is_hf_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def checkpoint_steps(workdir) -> list[int]:
    """The steps of r1jax workdir ``workdir``'s complete checkpoints, in order (as orbax, which
    writes them, counts them)."""
    if not _is_workdir(Path(workdir)):
        raise FileNotFoundError(f"{workdir} is not an r1jax workdir (it has no checkpoints/)")
    ckpt = Checkpointer(str(workdir))
    try:
        return ckpt.all_steps()
    finally:
        ckpt.close()


def load_policy(source, dtype=None, mesh=None, step=None):
    """(cfg, params) of ``source``, params placed with their shardings on ``mesh`` (default: one
    device). ``source`` is a ``model`` section (a mapping with name / vocab_size / hf_path /
    dtype / init_seed: its HF checkpoint, else the named config randomly initialised from
    init_seed), or a path: an r1jax workdir (checkpoint ``step``'s policy, default the latest, of
    the model its config.json names) or an HF checkpoint directory. ``dtype``: default the
    section's dtype, the workdir config's, or float32. ``step`` is an error for the others: they
    hold one policy, and ignoring it would load a different one than asked."""
    mesh = mesh or make_mesh(devices=jax.devices()[:1])
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if step is not None and (path is None or not _is_workdir(path)):
        raise ValueError(f"step={step} picks one of an r1jax workdir's checkpoints, and "
                         f"{path or 'a model section'} is not a workdir")
    if path is None:
        dtype = jnp.dtype(dtype or source.get("dtype") or "float32")
        if source.get("hf_path"):
            return models.load_hf(source["hf_path"], dtype=dtype, mesh=mesh)
        cfg = model_config(source)
        params = models.init(cfg, jax.random.key(source.get("init_seed", 0)), dtype)
        return cfg, models.shard_params(cfg, params, mesh)
    if _is_workdir(path):
        if step is not None and step not in (steps := checkpoint_steps(path)):
            raise FileNotFoundError(f"{path} has no checkpoint at step {step}; its steps are "
                                    f"{', '.join(map(str, steps)) or 'none'}")
        model = _read_json(path / "config.json").get("model") or {}
        cfg = model_config(model)
        dtype = jnp.dtype(dtype or model.get("dtype") or "float32")
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                models.abstract_params(cfg, dtype),
                                models.param_shardings(cfg, mesh, dtype))
        ckpt = Checkpointer(str(path))
        try:
            return cfg, ckpt.restore_params(abstract, step)
        finally:
            ckpt.close()
    if _is_hf_checkpoint(path):
        return models.load_hf(str(path), dtype=jnp.dtype(dtype or "float32"), mesh=mesh)
    raise FileNotFoundError(f"{path} is neither an r1jax workdir (with checkpoints/) nor an HF "
                            f"checkpoint directory (config.json and *.safetensors)")


def tokenizer_source(path) -> Path:
    """The tokenizer (a file or directory, for `tokenizers.load_tokenizer`) that goes with the
    checkpoint at ``path``: an HF checkpoint's own; a workdir's config ``tokenizer``, else its
    model's ``hf_path``, else the workdir itself (the toy world's tokenizer.model)."""
    path = Path(path)
    if not _is_workdir(path):
        return path
    config = _read_json(path / "config.json")
    return Path(config.get("tokenizer") or (config.get("model") or {}).get("hf_path") or path)
