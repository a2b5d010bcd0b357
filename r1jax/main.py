"""Command line: ``python -m r1jax.main --config=experiments/X.py[:arg] --workdir=DIR``.

Overrides go after it as ``--config.rl.lr=1e-6``; a key that the config does not have is an
error naming it. The config's ``job`` picks what runs (``rl``: R1-Zero training from
``config.model``). Starting again with the same workdir resumes the run.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:argument]")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and plots")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "split the host CPU into this many JAX devices, so that the mesh's "
    "data axis spans that many cores (XLA:CPU runs one computation on one core). On a CPU-only "
    "machine, its core count; batch sizes must divide by it. No effect on accelerators. "
    "Unset: JAX's default (one CPU device).")


def _parse_flags(argv):
    """absl flag parsing, with config mistakes reported as one sentence instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        message = str(e).replace("\\n", " ").replace("\n", " ").strip("'\"")
        sys.exit(f"r1jax.main: bad command line: {message}")


def load_experiment(path: str, arg: str = ""):
    """``get_config(arg)`` of an experiment file, as ``--config=PATH[:ARG]`` gives it (for
    notebooks and tests: ``load_experiment("experiments/aha_tiny.py", "smoke")``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def load_policy(model):
    """(model config, params) from ``config.model``: an HF checkpoint dir, or a named config
    (its vocabulary resized when ``vocab_size`` is set) randomly initialised."""
    import jax
    import jax.numpy as jnp

    from r1jax import models

    dtype = jnp.dtype(model.dtype)
    if model.hf_path:
        return models.load_hf(model.hf_path, dtype=dtype)
    cfg = models.get_config(model.name, **({"vocab_size": model.vocab_size} if model.vocab_size else {}))
    return cfg, models.init(cfg, jax.random.key(model.init_seed), dtype)


def corpus_config(config):
    """The toy world's CorpusConfig: ``config.corpus`` (its fields but tasks) for the tasks of
    ``config.data``; the defaults where the config has no corpus section."""
    from r1jax import data

    fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v
              for k, v in config.get("corpus", {}).items()}
    return data.CorpusConfig(tasks=tuple(config.data.tasks), **fields)


def toy_tokenizer(config, workdir, vocab_size: int):
    """The toy world's SentencePiece tokenizer, trained on ``config.data.tokenizer_documents``
    of its corpus once and reused from ``workdir/tokenizer.model``."""
    from r1jax import data, tokenizers

    prefix = os.path.join(workdir, "tokenizer")
    if not os.path.exists(prefix + ".model"):
        lines = data.corpus_documents(config.data.seed, config.data.tokenizer_documents,
                                      corpus_config(config))
        tokenizers.train_sentencepiece(lines, prefix, vocab_size)
    return tokenizers.load_tokenizer(prefix + ".model")


def pretrained_base(config, workdir, cfg, params, tokenizer, mesh):
    """The toy world's base model: ``params`` trained from scratch with next-token loss on
    ``config.pretrain.documents`` corpus documents (r1jax.sft, checkpointed and resumable in
    ``workdir/pretrain``), saved as an HF checkpoint in ``workdir/base`` and reused from there."""
    import jax.numpy as jnp

    from r1jax import data, models, sft

    base = os.path.join(workdir, "base")
    if not os.path.exists(base):
        p = config.pretrain
        print(f"pretraining the base model: {p.steps} steps of {p.batch_size} x {p.seq_len} "
              f"tokens")
        documents = data.corpus_documents(config.data.seed + 1, p.documents, corpus_config(config))
        pairs = [data.split_prompt(doc) for doc in documents]
        batches = iter(sft.sft_dataset(pairs, tokenizer, p.seq_len, p.batch_size, p.seed,
                                       p.mask_prompt))
        params = sft.train(p, os.path.join(workdir, "pretrain"), cfg, params, batches, mesh)
        if _stopped_early(os.path.join(workdir, "pretrain"), p.steps):
            sys.exit(0)  # SIGTERM: the checkpoint is written; a rerun resumes pretraining
        models.save_hf(cfg, params, base + ".partial")
        os.replace(base + ".partial", base)  # a killed save leaves no base to reuse
    return models.load_hf(base, dtype=jnp.dtype(config.model.dtype), mesh=mesh)


def _stopped_early(workdir, steps: int) -> bool:
    """Whether the training run in ``workdir`` returned before its last step (SIGTERM): its
    metrics.jsonl, which logs every step, skipped updates included, ends short of ``steps``."""
    from r1jax import metrics

    path = os.path.join(workdir, "metrics.jsonl")
    logged = metrics.read_metrics(path) if os.path.exists(path) else []
    return not logged or logged[-1]["step"] < steps


def prompt_batches(data_cfg, batch_size: int, seed: int):
    """A checkpointable iterator of training batches: toy-world problems in the R1-Zero template."""
    from r1jax.data import pipeline, tasks
    from r1jax.templates import r1_zero_prompt

    examples = [
        {**ex, "prompt": r1_zero_prompt(ex["question"])}
        for task in data_cfg.tasks
        for ex in tasks.make_split(task, "train", data_cfg.train_size, data_cfg.seed,
                                   levels=tuple(data_cfg.levels))]
    return iter(pipeline.prompt_dataset(examples, batch_size, seed))


def run_rl(config, workdir):
    """R1-Zero from ``config.model``; on the toy world, from a base model pretrained first when
    the config has a ``pretrain`` section."""
    from r1jax import rewards, rl, tokenizers
    from r1jax.mesh import make_mesh

    cfg, params = load_policy(config.model)
    mesh = make_mesh(**config.mesh)
    print(f"mesh {dict(mesh.shape)} over {mesh.size} {mesh.devices.flat[0].platform} device(s)",
          flush=True)
    if config.tokenizer or config.model.hf_path:
        tokenizer = tokenizers.load_tokenizer(config.tokenizer or config.model.hf_path)
    else:
        tokenizer = toy_tokenizer(config, workdir, cfg.vocab_size)
    if "pretrain" in config:
        cfg, params = pretrained_base(config, workdir, cfg, params, tokenizer, mesh)
    examples = prompt_batches(config.data, config.rl.prompts_per_step, config.rl.seed)
    hook = held_out_evaluation(config, cfg, tokenizer, mesh) if config.rl.eval_every else None
    base = hook(0, params) if hook else {}
    with rewards.RewardScorer(dict(config.rewards), config.reward_workers,
                              config.reward_timeout_s) as scorer:
        final = rl.train(config.rl, workdir, cfg, params, tokenizer, scorer, examples, mesh, hook)
    if _stopped_early(workdir, config.rl.steps):
        return  # SIGTERM: checkpointed; the final evaluation and report wait for the rerun
    report(workdir, base, hook(config.rl.steps, final) if hook else {})


def report(workdir, base_eval: dict, final_eval: dict):
    """Plots and the markdown results table of a finished run, written into its workdir."""
    from r1jax import metrics, plots

    history = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
    evals = [{"step": h["step"], **{k.removeprefix("eval/"): v for k, v in h.items()
                                    if k.startswith("eval/")}}
             for h in history if "eval/pass@1" in h]
    strip = {name: {k.removeprefix("eval/"): v for k, v in e.items()}
             for name, e in (("base", base_eval), ("final", final_eval)) if e}
    if "base" in strip:
        evals.insert(0, {"step": 0, **strip["base"]})
    paths = plots.plot_run(history, evals, workdir)
    print("plots: " + ", ".join(paths))
    if len(strip) == 2:  # the table compares the base and final evaluations
        table = plots.results_table(history, strip)
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(table + "\n")
        print(table)


def held_out_problems(config) -> list[dict]:
    """``config.eval``'s problems in the R1-Zero template: the first ``n_problems`` of benchmark
    ``benchmark`` read from ``data_file`` (a file or "tfds:NAME[:SPLIT]") or from its file in
    ``data_dir``; a toy benchmark with neither generates its test problems of ``config.data``'s
    levels."""
    from r1jax import benchmarks_data
    from r1jax.templates import r1_zero_prompt

    e = config.eval
    problems = benchmarks_data.load(e.benchmark, e.get("data_dir") or None,
                                    path=e.get("data_file") or None, n=e.n_problems,
                                    levels=tuple(config.data.levels))
    return [{**p, "prompt": r1_zero_prompt(p["question"])} for p in problems]


def held_out_evaluation(config, cfg, tokenizer, mesh):
    """The in-loop evaluation of ``held_out_problems`` (k, max_new_tokens from ``config.eval``)
    through the same code as ``python -m r1jax.evaluate``, at the paper's T 0.6 / top-p 0.95."""
    from r1jax import benchmarks_data, evaluate

    bench = benchmarks_data.BENCHMARKS[config.eval.benchmark]
    return evaluate.training_hook(cfg, tokenizer, held_out_problems(config), bench.judge,
                                  k=config.eval.k, max_new_tokens=config.eval.max_new_tokens,
                                  equivalent=bench.equivalent, mesh=mesh)


JOBS = {"rl": run_rl}


def main(argv):
    if len(argv) > 1:
        sys.exit(f"r1jax.main: unexpected arguments {argv[1:]}")
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or not workdir:
        sys.exit("r1jax.main: --config and --workdir are required")
    if config.job not in JOBS:
        sys.exit(f"r1jax.main: config.job={config.job!r} is not one of {sorted(JOBS)}")
    if _CPU_DEVICES.value is not None:
        from r1jax.mesh import use_cpu_devices

        try:
            use_cpu_devices(_CPU_DEVICES.value)
        except ValueError as e:
            sys.exit(f"r1jax.main: {e}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    JOBS[config.job](config, workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
