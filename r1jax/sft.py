"""Next-token training: pretraining, cold-start SFT and distillation share this loop.

A batch is int32 tokens [B, T+1] (inputs and their next-token targets) and a bool loss mask
[B, T] over the targets tokens[:, 1:]: all True for pretraining, True on completion tokens only
for SFT and distillation. The loss is the mean negative log-likelihood over the masked targets,
computed as a sum and its denominator so that it stays exact under gradient accumulation
(``microbatches``; see optim.py).

    it = iter(pipeline.sft_dataset(pairs, tokenizer, seq_len=256, batch_size=32, seed=0))
    result = sft.train(config, workdir, cfg, params, it, mesh)   # loop.RunResult

The iterator yields either token arrays (every target counts) or dicts {"tokens", "loss_mask"},
and has ``get_state``/``set_state`` (a grain DatasetIterator) so a resumed run sees the batches
an uninterrupted one would.
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from r1jax import loop, models, multihost, optim
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
        b1=0.9, b2=0.99,
        mask_prompt=True,  # SFT data: only completion tokens are targets
        max_nonfinite_in_row=5,
        checkpoint_every=500,
    ))


@dataclasses.dataclass(frozen=True)
class UpdateSettings:
    """What the jitted next-token update depends on besides its arrays (a static argument)."""

    optimizer: optim.OptimizerSettings
    compute_dtype: str  # "float32" or "bfloat16" on float32 master params
    logprob_chunk: int  # 0: dense [B, T, V] logits; else positions per chunk
    layers: str  # how the blocks run: loop, remat, scan (models.token_logprobs)

    def __post_init__(self):
        if self.layers not in models.LAYER_MODES:
            raise ValueError(f"layers {self.layers!r} is not one of {models.LAYER_MODES}")

    @classmethod
    def from_config(cls, c) -> "UpdateSettings":
        return cls(optim.OptimizerSettings.from_config(c, c.steps),
                   optim.compute_dtype(c.compute_dtype), int(c.logprob_chunk),
                   str(c.layers))


def nll_terms(cfg, s: UpdateSettings, params, batch) -> LossTerms:
    """Sum of -log p(target) over the masked targets, and the number of masked targets, with
    ``params`` cast to the compute dtype."""
    tokens_BT1, loss_mask_BT = batch
    attention = jnp.ones_like(tokens_BT1, dtype=bool)
    logprobs_BT, _ = models.token_logprobs(
        cfg, optim.cast_floating(params, s.compute_dtype), tokens_BT1, attention,
        chunk=s.logprob_chunk, layers=s.layers)
    mask = loss_mask_BT.astype(jnp.float32)
    return LossTerms(-jnp.sum(logprobs_BT * mask), jnp.sum(mask), {})


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def update(cfg, s: UpdateSettings, params, opt_state, microbatches):
    """One guarded update from (tokens [M, b, T+1], loss_mask [M, b, T]) microbatches: (params,
    opt_state, metrics) with loss, grad_norm, tokens and skipped; params and opt_state donated.
    The forward and backward passes run in ``s.compute_dtype`` on float32 master params."""
    def terms_fn(p, batch):
        return nll_terms(cfg, s, p, batch)

    params, opt_state, terms, out = optim.guarded_update(
        terms_fn, s.optimizer.make(), params, opt_state, microbatches)
    return params, opt_state, {**out, "tokens": terms.denom}


def _split_batch(batch, config, rows: int):
    """(tokens, loss_mask) microbatches of a batch of ``rows`` rows (this process's share)."""
    if isinstance(batch, dict):
        tokens, mask = np.asarray(batch["tokens"]), np.asarray(batch["loss_mask"])
    else:
        tokens = np.asarray(batch)
        mask = np.ones((tokens.shape[0], tokens.shape[1] - 1), bool)
    if tokens.shape != (rows, config.seq_len + 1) or mask.shape != (rows, config.seq_len):
        raise ValueError(f"batch of tokens {tokens.shape} / loss_mask {mask.shape}; the config "
                         f"asks for batch_size={config.batch_size}, seq_len={config.seq_len} "
                         f"(tokens [B, seq_len + 1], loss_mask [B, seq_len]; {rows} of the B "
                         f"rows from this process)")
    if rows % config.microbatches:
        raise ValueError(f"batch_size={config.batch_size} ({rows} rows from this process) does "
                         f"not split into microbatches={config.microbatches}")
    return optim.split_microbatches((tokens.astype(np.int32), mask), config.microbatches)


def train(config, workdir, cfg, params, batches, mesh) -> loop.RunResult:
    """Run (or resume) next-token training for ``config.steps`` updates (the loop's skeleton:
    checkpoints with the iterator state, resume, SIGTERM; see loop.py). In a run over several
    processes, ``batches`` yields this process's rows of each batch (`pipeline.sft_dataset`'s
    ``shard``)."""
    settings = UpdateSettings.from_config(config)
    params = models.shard_params(cfg, params, mesh)
    # A copy: the update donates its inputs, and the caller's arrays must survive the run.
    state = {"params": jax.tree.map(jnp.copy, params),
             "opt_state": optim.init_opt_state(settings.optimizer.make(), params, mesh)}
    rows = multihost.row_slice(mesh, config.batch_size)  # the batches' rows this process reads

    def step_fn(state, step):
        t0 = time.perf_counter()
        microbatches = multihost.put_rows(  # the rows of each microbatch over the data axes
            mesh, _split_batch(next(batches), config, rows.stop - rows.start), axis=1)
        params, opt_state, out = update(cfg, settings, state["params"], state["opt_state"],
                                        microbatches)
        out = {k: float(v) for k, v in multihost.fetch(out).items()}
        dt = time.perf_counter() - t0
        out.update({"time/step_s": dt,
                    "throughput/tokens_per_s": microbatches[0].size / dt})
        return loop.StepResult({"params": params, "opt_state": opt_state}, out, int(out["skipped"]))

    return loop.run(workdir, loop.LoopSettings.from_config(config), state, batches, step_fn)
