"""The toy world's stage: its SentencePiece tokenizer, its base model pretrained from scratch on
the toy corpus, and its problems as RL prompt batches; plus the `pretrain` job.

Every artifact goes into the run's workdir and is reused when present: ``tokenizer.model``, the
pretraining run in ``pretrain/`` (checkpointed and resumable) and the base model in ``base/`` as
an HF checkpoint. The config sections read here are ``data`` (tasks, levels, sizes, seed),
``corpus`` (the `r1jax.data.CorpusConfig` fields but tasks) and ``pretrain`` (`sft.default_config`
keys and ``documents``).
"""

import os
import tempfile
from pathlib import Path

from etils import epath

from r1jax import data, files, tokenizers


def corpus_config(config) -> data.CorpusConfig:
    """The CorpusConfig of ``config.corpus`` (its fields but tasks) for the tasks of
    ``config.data``; the defaults where the config has no corpus section."""
    fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v
              for k, v in config.get("corpus", {}).items()}
    return data.CorpusConfig(tasks=tuple(config.data.tasks), **fields)


def tokenizer(config, workdir: str, vocab_size: int) -> tokenizers.Tokenizer:
    """The SentencePiece tokenizer trained on ``config.data.tokenizer_documents`` corpus
    documents, once, and reused from ``workdir/tokenizer.model``."""
    from r1jax import multihost

    if multihost.is_primary() and not tokenizer_file(workdir).exists():
        lines = data.corpus_documents(config.data.seed, config.data.tokenizer_documents,
                                      corpus_config(config))
        with tempfile.TemporaryDirectory() as tmp:  # sentencepiece writes local files only
            tokenizers.train_sentencepiece(lines, os.path.join(tmp, "tokenizer"), vocab_size)
            for name in ("tokenizer.vocab", "tokenizer.model"):  # the model last: it marks done
                files.upload(Path(tmp, name), epath.Path(workdir) / name)
    multihost.sync("toy tokenizer")  # the other processes read what process 0 wrote
    return tokenizers.load_tokenizer(files.local_copy(tokenizer_file(workdir)))


def tokenizer_file(workdir) -> epath.Path:
    """Where the toy world's SentencePiece model is in the run's workdir."""
    return epath.Path(workdir) / "tokenizer.model"


def base_model(config, workdir: str, cfg, params, tokenizer, mesh):
    """(cfg, params) of the base model: ``params`` trained with next-token loss on
    ``config.pretrain.documents`` corpus documents (`sft.train` in ``workdir/pretrain``), saved as
    an HF checkpoint in ``workdir/base`` and loaded from there with ``config.model.dtype``.
    None when pretraining was stopped by SIGTERM (it is checkpointed; a rerun resumes it)."""
    from r1jax import export, multihost, policy, sft
    from r1jax.data import pipeline

    base = epath.Path(workdir) / "base"
    if not base.exists():
        p = config.pretrain
        print(f"pretraining the base model: {p.steps} steps of {p.batch_size} x {p.seq_len} "
              f"tokens")
        documents = data.corpus_documents(config.data.seed + 1, p.documents, corpus_config(config))
        pairs = [data.split_prompt(doc) for doc in documents]
        batches = iter(pipeline.sft_dataset(pairs, tokenizer, p.seq_len, p.batch_size, p.seed,
                                            p.mask_prompt, multihost.row_block(mesh, p.batch_size)))
        result = sft.train(p, os.path.join(workdir, "pretrain"), cfg, params, batches, mesh)
        if not result.finished:
            return None
        trained = multihost.fetch(result.state["params"])
        if multihost.is_primary():  # through base.partial: a killed save leaves no base to reuse
            export.write(cfg, trained, {}, base)
        multihost.sync("toy base model")
    return policy.load_policy(files.local_copy(base), dtype=config.model.dtype, mesh=mesh)


def prompt_batches(data_config, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)):
    """A checkpointable iterator of training batches (``shard``'s rows of each:
    `pipeline.prompt_dataset`): toy-world train problems in the R1-Zero template."""
    from r1jax.data import pipeline
    from r1jax.templates import r1_zero_prompt

    examples = [
        {**ex, "prompt": r1_zero_prompt(ex["question"])}
        for task in data_config.tasks
        for ex in data.make_split(task, "train", data_config.train_size, data_config.seed,
                                  levels=tuple(data_config.levels))]
    return iter(pipeline.prompt_dataset(examples, batch_size, seed, shard=shard))


def job(config, workdir: str) -> bool:
    """The `pretrain` job: the toy world's tokenizer and base model alone (``workdir/base``),
    what the RL job of an experiment with a ``pretrain`` section starts from; whether it
    finished (False: stopped by SIGTERM, checkpointed)."""
    from r1jax import policy
    from r1jax.mesh import mesh_from_config

    mesh = mesh_from_config(config.mesh)
    cfg, params = policy.load_policy(config.model, mesh=mesh)
    return base_model(config, workdir, cfg, params, tokenizer(config, workdir, cfg.vocab_size),
                      mesh) is not None
