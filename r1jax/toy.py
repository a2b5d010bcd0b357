"""The toy world's stage: its SentencePiece tokenizer, its base model pretrained from scratch on
the toy corpus, and its problems as RL prompts; plus the `pretrain` job and the
`cold_start_data` job (R1's cold-start SFT set for the toy world) and the `general_data` job
(its general prompts, their SFT records and reward-model preference pairs).

Every artifact goes into the run's workdir and is reused when present: ``tokenizer.model``, the
pretraining run in ``pretrain/`` (checkpointed and resumable) and the base model in ``base/`` as
an HF checkpoint with the tokenizer (later stages of a pipeline start from it alone). The
config sections read here are ``data`` (tasks, levels, sizes, seed, and languages when the
problems are posed in more than English), ``corpus`` (the `r1jax.data.CorpusConfig` fields but
tasks), ``pretrain`` (`sft.default_config` keys and ``documents``) and ``cold_start``
(``examples``, ``seed``, ``slip_fraction``: `cold_start_job`) and ``general_data``
(`general_data_job`).
"""

import collections
import os
import random
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
            try:
                tokenizers.train_sentencepiece(lines, os.path.join(tmp, "tokenizer"), vocab_size)
            except RuntimeError as e:  # its trainer's only error type: too small a vocabulary
                raise ValueError(f"config.model.vocab_size={vocab_size} cannot hold the toy "
                                 f"world's tokenizer: {str(e).split('] ')[-1]}") from e
            for name in ("tokenizer.vocab", "tokenizer.model"):  # the model last: it marks done
                files.upload(Path(tmp, name), epath.Path(workdir) / name)
    multihost.sync("toy tokenizer")  # the other processes read what process 0 wrote
    return tokenizers.load_tokenizer(files.local_copy(tokenizer_file(workdir)))


def job_tokenizer(config, workdir: str, cfg):
    """(tokenizer, its file or directory) of a job: ``config.tokenizer``, else the checkpoint's
    (``config.model.hf_path``), else the toy world's, trained into the workdir; checked against
    the model's embedding before anything is loaded or compiled."""
    from r1jax import policy

    source = config.tokenizer or config.model.hf_path
    loaded = (tokenizers.load_tokenizer(source) if source
              else tokenizer(config, workdir, cfg.vocab_size))
    policy.check_tokenizer(cfg, loaded, source or "the toy world's tokenizer")
    return loaded, source or files.local_copy(tokenizer_file(workdir))


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
        packed = pipeline.pack_pairs(pairs, tokenizer, p.seq_len, p.mask_prompt)
        batches = iter(pipeline.sft_dataset(packed, p.batch_size, p.seed,
                                            multihost.row_block(mesh, p.batch_size)))
        result = sft.train(p, os.path.join(workdir, "pretrain"), cfg, params, batches, mesh)
        if not result.finished:
            return None
        trained = multihost.fetch(result.state["params"])
        if multihost.is_primary():  # through base.partial: a killed save leaves no base to reuse
            export.write(cfg, trained, export.tokenizer_files(
                files.local_copy(tokenizer_file(workdir))), base)
        multihost.sync("toy base model")
    return policy.load_policy(files.local_copy(base), dtype=config.model.dtype, mesh=mesh)


def train_examples(data_config) -> list[dict]:
    """The toy world's train problems in the R1-Zero template, each once, posed in
    ``data_config.languages`` (English alone when unset; see `data.make_split`)."""
    from r1jax.templates import r1_zero_prompt

    languages = tuple(data_config.get("languages", ("en",)))
    return [{**ex, "prompt": r1_zero_prompt(ex["question"])}
            for task in data_config.tasks
            for ex in data.make_split(task, "train", data_config.train_size, data_config.seed,
                                      levels=tuple(data_config.levels), languages=languages)]


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


def cold_start_job(config, workdir: str) -> bool:
    """The `cold_start_data` job: R1's cold-start SFT set for the toy world in
    ``workdir/data.jsonl``, ``config.cold_start.examples`` records (R1: "thousands") of the train
    problems of ``config.data`` (its tasks in equal shares, levels and languages) in the
    R1-Zero template, each completed by its long work wholly in the problem's language, with a
    corrected slip in ``config.cold_start.slip_fraction`` of them, a summary and the answer
    (`corpus.readable_completion`); ``report.md`` beside it. The same for the same config;
    skipped when data.jsonl exists.

    The problems are drawn with ``config.cold_start.seed``, not ``data.seed``: other draws than
    the RL prompts (SFT on a prompt's worked answer would let RL on it recall rather than
    reason), with ids that say so; a problem still repeats where a level has few (level-1 sums:
    729)."""
    from r1jax import multihost
    from r1jax.data import records
    from r1jax.data.corpus import readable_completion
    from r1jax.data.languages import EN
    from r1jax.data.tasks import split_problems

    out = epath.Path(workdir) / "data.jsonl"
    if out.exists():
        print(f"cold-start data: {out} exists, skipped")
        return True
    c = config.cold_start
    data_config = config.data.copy_and_resolve_references()
    data_config.update(seed=c.seed, train_size=-(-c.examples // len(data_config.tasks)))
    problems = [p for task in data_config.tasks  # in train_examples' order: task after task
                for p in split_problems(task, "train", data_config.train_size, c.seed,
                                        tuple(data_config.levels))]
    pairs = list(zip(train_examples(data_config), problems, strict=True))[:c.examples]
    rng = random.Random(f"cold_start/{c.seed}")
    rows = [{"prompt": example["prompt"],
             "completion": readable_completion(problem, example.get("lang", EN), rng,
                                               c.slip_fraction),
             "source": {"stage": "cold_start_data", "example": example["id"],
                        "lang": example.get("lang", EN)}}
            for example, problem in pairs]
    if multihost.is_primary():
        languages = collections.Counter(row["source"]["lang"] for row in rows)
        words = sum(len(row["completion"].split()) for row in rows) / len(rows)
        counts = ", ".join(f"{lang}: {n}" for lang, n in sorted(languages.items()))
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / "report.md").write_text(
            f"# Cold-start data\n\n{len(rows)} records in data.jsonl, in {len(languages)} "
            f"languages ({counts}); {words:.1f} words per completion on average.\n")
        records.write_jsonl(out, rows)  # last: its presence means the job is done
        print(f"cold-start data: {len(rows)} records in {out}")
    multihost.sync("cold-start data")
    return True


GENERAL_FILES = ("sft.jsonl", "helpfulness.jsonl", "harmlessness.jsonl", "prompts.jsonl")


def general_data_job(config, workdir: str) -> bool:
    """The `general_data` job: the toy world's general prompts (`r1jax.data.chat`) in
    ``workdir``, the same for the same ``config.general_data`` (``seed``, and counts):

        prompts.jsonl       ``prompts`` rows {"id", "prompt", "answer"}: an RL prompt source in
                            format "general" (`r1jax.scenarios`); written last, the job's output
        sft.jsonl           ``sft`` SFT records, unhelpful and harmful in the given fractions
        helpfulness.jsonl   ``pairs`` preference pairs of summaries, for a reward model
        harmlessness.jsonl  ``pairs`` preference pairs of whole responses

    and report.md. Prompts, SFT records and pairs are drawn apart (different requests).
    Skipped when prompts.jsonl exists."""
    from r1jax import multihost
    from r1jax.data import chat, records

    out = epath.Path(workdir)
    if (out / GENERAL_FILES[-1]).exists():
        print(f"general data: {out / GENERAL_FILES[-1]} exists, skipped")
        return True
    c = config.general_data
    made = [chat.sft_records(c.sft, c.seed, c.unhelpful_fraction, c.harmful_fraction),
            chat.preference_pairs(c.pairs, c.seed, "helpfulness"),
            chat.preference_pairs(c.pairs, c.seed, "harmlessness"),
            chat.general_prompts(c.prompts, c.seed)]
    if multihost.is_primary():
        out.mkdir(parents=True, exist_ok=True)
        sft = made[0]
        (out / "report.md").write_text(
            f"# General data\n\n{c.prompts} general prompts, {c.sft} SFT records "
            f"({sum(not r['source']['helpful'] for r in sft)} unhelpful, "
            f"{sum(r['source']['harmful'] for r in sft)} harmful), {c.pairs} preference pairs "
            f"for each of helpfulness and harmlessness.\n")
        for name, rows in zip(GENERAL_FILES, made, strict=True):  # prompts.jsonl last
            records.write_jsonl(out / name, rows)
        print(f"general data: {', '.join(GENERAL_FILES)} in {out}")
    multihost.sync("general data")
    return True
