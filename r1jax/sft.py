"""Next-token training: pretraining, cold-start SFT and distillation share this loop.

A batch is int32 tokens [B, T+1] (inputs and their next-token targets), a bool loss mask
[B, T] over the targets tokens[:, 1:] (True on completion tokens only for SFT and distillation)
and int32 segment ids [B, T+1] that keep packed documents apart (`pipeline.pack_pairs`). The
loss is the mean negative log-likelihood over the masked targets,
computed as a sum and its denominator so that it stays exact under gradient accumulation
(``microbatches``; see optim.py).

    packed = pipeline.pack_pairs(pairs, tokenizer, seq_len=256)   # (prompt, completion) pairs
    it = iter(pipeline.sft_dataset(packed, batch_size=32, seed=0))
    result = sft.train(config, workdir, cfg, params, it, mesh)   # loop.RunResult

The iterator yields either token arrays (one sequence per row, every target counts) or dicts
{"tokens", "loss_mask", "segments"} (the last two optional: every target, one sequence per row),
and has ``get_state``/``set_state`` (a grain DatasetIterator) so a resumed run sees the batches
an uninterrupted one would.
"""

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from r1jax import loop, metrics, models, multihost, optim
from r1jax.optim import LossTerms


def default_config() -> ml_collections.ConfigDict:
    """Every key the loop reads; experiments override what they need."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        steps=1000,
        batch_size=32,
        seq_len=256,
        microbatches=1,  # gradient accumulation inside one update
        compute_dtype="auto",  # forward/backward dtype; params and optimizer state stay float32
        logprob_chunk=0,  # > 0: log-probs over this many positions at a time, never [B, T, V]
        layers="loop",  # "remat" / "scan": the blocks' activations recomputed in the backward
        lr=3e-3, warmup_steps=50, schedule="cosine", weight_decay=0.0, grad_clip=1.0,
        b1=0.9, b2=0.99, end_lr_fraction=0.0,  # cosine decays to lr x end_lr_fraction
        mask_prompt=True,  # SFT data: only completion tokens are targets
        data=(),  # the sft job's JSONL files of {"prompt", "completion", ...} records
        epochs=0,  # > 0: the sft job makes as many steps as this many passes take (R1: 2)
        max_nonfinite_in_row=5,
        checkpoint_every=500,
    ))


@dataclasses.dataclass(frozen=True)
class UpdateSettings:
    """What a jitted supervised update (next-token here, pair ranking in `r1jax.reward_model`)
    depends on besides its arrays (a static argument)."""

    optimizer: optim.OptimizerSettings
    compute_dtype: str  # "float32" or "bfloat16" on float32 master params
    layers: str  # how the blocks run: loop, remat, scan (models.token_logprobs)
    logprob_chunk: int = 0  # next-token log-probs: 0 dense [B, T, V] logits, else per chunk

    def __post_init__(self):
        if self.layers not in models.LAYER_MODES:
            raise ValueError(f"layers {self.layers!r} is not one of {models.LAYER_MODES}")

    @classmethod
    def from_config(cls, c) -> "UpdateSettings":
        """From a config section with steps, the optimizer's keys, compute_dtype, layers and,
        for next-token training, logprob_chunk."""
        return cls(optim.OptimizerSettings.from_config(c, c.steps),
                   optim.compute_dtype(c.compute_dtype), str(c.layers),
                   int(c.get("logprob_chunk", 0)))


def nll_terms(cfg, s: UpdateSettings, params, batch) -> LossTerms:
    """Sum of -log p(target) over the masked targets, and the number of masked targets, with
    ``params`` cast to the compute dtype; each token attends within its segment only."""
    tokens_BT1, loss_mask_BT, segments_BT1 = batch
    logprobs_BT, _ = models.token_logprobs(
        cfg, optim.cast_floating(params, s.compute_dtype), tokens_BT1, segments_BT1,
        chunk=s.logprob_chunk, layers=s.layers)
    mask = loss_mask_BT.astype(jnp.float32)
    return LossTerms(-jnp.sum(logprobs_BT * mask), jnp.sum(mask), {})


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def update(cfg, s: UpdateSettings, params, opt_state, microbatches):
    """One guarded update from (tokens [M, b, T+1], loss_mask [M, b, T], segments
    [M, b, T+1]) microbatches: (params,
    opt_state, metrics) with loss, grad_norm, tokens and skipped; params and opt_state donated.
    The forward and backward passes run in ``s.compute_dtype`` on float32 master params."""
    def terms_fn(p, batch):
        return nll_terms(cfg, s, p, batch)

    params, opt_state, terms, out = optim.guarded_update(
        terms_fn, s.optimizer.make(), params, opt_state, microbatches)
    return params, opt_state, {**out, "tokens": terms.denom}


def _split_batch(batch, config, rows: int):
    """(tokens, loss_mask, segments) microbatches of a batch of ``rows`` rows (this process's
    share)."""
    batch = batch if isinstance(batch, dict) else {"tokens": batch}
    tokens = np.asarray(batch["tokens"])
    mask = np.asarray(batch.get("loss_mask", np.ones((tokens.shape[0], tokens.shape[1] - 1), bool)))
    segments = np.asarray(batch.get("segments", np.ones_like(tokens)))  # one sequence per row
    if (tokens.shape != (rows, config.seq_len + 1) or mask.shape != (rows, config.seq_len)
            or segments.shape != tokens.shape):
        raise ValueError(f"batch of tokens {tokens.shape} / loss_mask {mask.shape} / segments "
                         f"{segments.shape}; the config asks for batch_size={config.batch_size}, "
                         f"seq_len={config.seq_len} (tokens and segments [B, seq_len + 1], "
                         f"loss_mask [B, seq_len]; {rows} of the B rows from this process)")
    return optim.split_microbatches((tokens.astype(np.int32), mask, segments.astype(np.int32)),
                                    config.microbatches)


def train(config, workdir, cfg, params, batches, mesh) -> loop.RunResult:
    """Run (or resume) next-token training for ``config.steps`` updates (the loop's skeleton:
    checkpoints with the iterator state, resume, SIGTERM; see loop.py). In a run over several
    processes, ``batches`` yields this process's rows of each batch (`pipeline.sft_dataset`'s
    ``shard``)."""
    settings = UpdateSettings.from_config(config)
    params = models.shard_params(cfg, params, mesh)
    return batch_updates(config, workdir, settings.optimizer, params, batches, mesh, _split_batch,
                         functools.partial(update, cfg, settings),
                         lambda microbatches: ("tokens", microbatches[0].size))


def batch_updates(config, workdir, optimizer: optim.OptimizerSettings, params, batches, mesh,
                  split_batch, apply_update, throughput) -> loop.RunResult:
    """`loop.run` of one update a batch, what next-token training and reward-model training
    share: each of ``config.steps`` batches cut into microbatches by ``split_batch(batch,
    config, rows)`` (this process's ``rows`` of ``config.batch_size``), placed over the mesh's
    data axes, and applied by ``apply_update(params, opt_state, microbatches) -> (params,
    opt_state, metrics with "skipped")``, which donates them. ``params`` are placed already;
    ``throughput(microbatches) -> (unit, amount)`` is logged per second."""
    # A copy: the update donates its inputs, and the caller's arrays must survive the run.
    state = {"params": jax.tree.map(jnp.copy, params),
             "opt_state": optim.init_opt_state(optimizer.make(), params, mesh)}
    rows = multihost.row_slice(mesh, config.batch_size)  # the batches' rows this process reads
    if (rows.stop - rows.start) % config.microbatches:
        raise ValueError(f"batch_size={config.batch_size} ({rows.stop - rows.start} rows from "
                         f"this process) does not split into microbatches={config.microbatches}")

    def step_fn(state, step):
        t0 = time.perf_counter()
        microbatches = multihost.put_rows(  # the rows of each microbatch over the data axes
            mesh, split_batch(next(batches), config, rows.stop - rows.start), axis=1)
        params, opt_state, out = apply_update(state["params"], state["opt_state"], microbatches)
        out = {k: float(v) for k, v in multihost.fetch(out).items()}
        dt = time.perf_counter() - t0
        unit, amount = throughput(microbatches)
        out.update({"time/step_s": dt, f"throughput/{unit}_per_s": amount / dt})
        return loop.StepResult({"params": params, "opt_state": opt_state}, out, int(out["skipped"]))

    return loop.run(workdir, loop.LoopSettings.from_config(config), state, batches, step_fn)


def job(config, workdir: str) -> bool:
    """The `sft` job (cold start, SFT on a rejection-sampled set, distillation): ``config.model``
    (an HF checkpoint at ``hf_path``, or a named config randomly initialised) trained on the
    (prompt, completion) records of the JSONL files ``config.sft.data`` (`r1jax.data.records`),
    prompt tokens masked and documents packed apart, for ``config.sft.epochs`` passes over them
    (``steps`` updates when epochs is 0). A finished run evaluates its model on ``config.eval``
    (``evaluation.json``) and writes it as an HF checkpoint in ``config.export``, the stage's
    output: when that exists the job is skipped. Returns whether the run finished (False:
    stopped by SIGTERM, checkpointed; rerun to resume)."""
    from r1jax import evaluate, export, policy, toy
    from r1jax.data import pipeline, records
    from r1jax.mesh import check_batch_split, mesh_from_config

    out = epath.Path(workdir) / config.export
    if config.export and out.exists():
        print(f"sft: {out} exists, so this stage is done")
        return True
    data = records.read_sft_records(tuple(config.sft.data))  # every record checked first
    cfg = policy.model_config(config.model)
    tokenizer, tokenizer_source = toy.job_tokenizer(config, workdir, cfg)
    c = config.sft.copy_and_resolve_references()
    packed = pipeline.pack_pairs([(r["prompt"], r["completion"]) for r in data], tokenizer,
                                 c.seq_len, c.mask_prompt)
    if c.epochs:
        c.steps = math.ceil(c.epochs * len(packed[0]) / c.batch_size)
    print(f"sft: {len(data)} records packed into {len(packed[0])} windows of {c.seq_len} "
          f"tokens; {c.steps} steps of {c.batch_size} windows")
    mesh = mesh_from_config(config.mesh)
    check_batch_split("sft.batch_size", c.batch_size, c.microbatches, mesh)
    hook = evaluate.hook_from_config(config, cfg, tokenizer, mesh)  # reads the problems now
    cfg, params = policy.load_policy(config.model, mesh=mesh)
    batches = iter(pipeline.sft_dataset(packed, c.batch_size, c.seed,
                                        multihost.row_block(mesh, c.batch_size)))
    result = train(c, workdir, cfg, params, batches, mesh)
    if result.finished:
        final = result.state["params"]
        summary = hook(c.steps, final)
        metrics.write_evaluation(workdir, summary)
        print(evaluate.markdown_table(summary))
        export.write_final(config, workdir, cfg, final, tokenizer_source)
    return result.finished
