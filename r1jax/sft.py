"""Next-token training: pretraining, cold-start SFT and distillation share this loop.

A batch is int32 tokens [B, T+1] (inputs and their next-token targets) and a bool loss mask
[B, T] over the targets tokens[:, 1:]: all True for pretraining, True on completion tokens only
for SFT and distillation. The loss is the mean negative log-likelihood over the masked targets,
computed as a sum and its denominator so that it stays exact under gradient accumulation
(``microbatches``), as in grpo.py.

    it = iter(sft_dataset(pairs, tokenizer, seq_len=256, batch_size=32, seed=0))
    params = sft.train(config, workdir, cfg, params, it, mesh)

The iterator yields either token arrays (every target counts) or dicts {"tokens", "loss_mask"},
and has ``get_state``/``set_state`` (a grain DatasetIterator) so a resumed run sees the batches
an uninterrupted one would.
"""

import functools
import signal
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from r1jax import metrics, models
from r1jax.checkpoint import Checkpointer
from r1jax.optim import make_optimizer


def default_config() -> ml_collections.ConfigDict:
    """Every key the loop reads; experiments override what they need."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        steps=1000,
        batch_size=32,
        seq_len=256,
        microbatches=1,  # gradient accumulation inside one update
        lr=3e-3, warmup_steps=50, schedule="cosine", weight_decay=0.0, grad_clip=1.0,
        b1=0.9, b2=0.99,
        mask_prompt=True,  # SFT data: only completion tokens are targets
        max_nonfinite_in_row=5,
        checkpoint_every=500,
    ))


def nll_terms(cfg, params, tokens_BT1, loss_mask_BT):
    """(sum of -log p(target) over the masked targets, number of masked targets)."""
    attention = jnp.ones_like(tokens_BT1, dtype=bool)
    logprobs_BT, _ = models.token_logprobs(cfg, params, tokens_BT1, attention)
    mask = loss_mask_BT.astype(jnp.float32)
    return -jnp.sum(logprobs_BT * mask), jnp.sum(mask)


def _optimizer(c):
    return make_optimizer(c.lr, c.steps, c.warmup_steps, c.schedule, c.weight_decay, c.b1, c.b2,
                          c.grad_clip)


_UPDATE_KEYS = ("lr", "steps", "warmup_steps", "schedule", "weight_decay", "b1", "b2",
                "grad_clip", "microbatches")


def make_update_fn(cfg, config):
    """A jitted, donated (params, opt_state, tokens_BT1, loss_mask_BT) -> (params, opt_state,
    metrics) with metrics loss, grad_norm, tokens and skipped.

    The batch is split into ``config.microbatches`` along B; the gradients of the NLL sums are
    accumulated and divided once by the total number of targets. An update whose loss, gradients
    or new params are not finite leaves params and optimizer state unchanged (``skipped``).
    """
    return _cached_update_fn(cfg, tuple((k, config[k]) for k in _UPDATE_KEYS))


@functools.lru_cache(maxsize=16)
def _cached_update_fn(cfg, settings):
    c = ml_collections.ConfigDict(dict(settings))
    optimizer = _optimizer(c)
    grad_fn = jax.value_and_grad(functools.partial(nll_terms, cfg), has_aux=True)

    def micro_step(carry, mb):
        params, total, count, grads = carry
        (t, n), g = grad_fn(params, *mb)
        return (params, total + t, count + n, jax.tree.map(jnp.add, grads, g)), None

    def update(params, opt_state, tokens_BT1, loss_mask_BT):
        split = lambda x: x.reshape(c.microbatches, -1, *x.shape[1:])  # noqa: E731
        tokens, mask = split(tokens_BT1), split(loss_mask_BT)
        (total, count), grads = grad_fn(params, tokens[0], mask[0])
        if c.microbatches > 1:
            (_, total, count, grads), _ = jax.lax.scan(
                micro_step, (params, total, count, grads), (tokens[1:], mask[1:]))
        denom = jnp.maximum(count, 1.0)
        loss = total / denom
        grads = jax.tree.map(lambda g: g / denom, grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        ok = jnp.all(jnp.stack([jnp.isfinite(loss)] + [
            jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((grads, new_params))]))
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(ok, new, old))
        out = dict(loss=loss, grad_norm=optax.tree.norm(grads), tokens=count, skipped=~ok)
        return keep(new_params, params), keep(new_opt_state, opt_state), out

    return jax.jit(update, donate_argnums=(0, 1))


def pack_pairs(pairs, tokenizer, seq_len: int, mask_prompt: bool = True):
    """(prompt, completion) pairs tokenized apart (as at inference), each followed by eos and
    packed whole into windows: tokens int32 [n, seq_len + 1] and a loss mask bool [n, seq_len]
    over their targets, False on padding and, with ``mask_prompt``, on prompt tokens.

    No document is cut across two windows (a completion trained without its prompt would teach
    the model to answer questions it cannot see); one longer than a window is truncated.
    """
    windows, masks, tokens, targets = [], [], [], []

    def flush():
        pad = seq_len + 1 - len(tokens)
        windows.append(tokens + [tokenizer.pad_id] * pad)
        masks.append((targets + [False] * pad)[1:])

    for prompt, completion in pairs:
        p, c = tokenizer.encode(prompt), tokenizer.encode(completion) + [tokenizer.eos_id]
        doc, target = (p + c)[:seq_len + 1], ([not mask_prompt] * len(p) + [True] * len(c))
        if tokens and len(tokens) + len(doc) > seq_len + 1:
            flush()
            tokens, targets = [], []
        tokens, targets = tokens + doc, targets + target[:len(doc)]
    if tokens:
        flush()
    return np.asarray(windows, np.int32), np.asarray(masks, bool)


def sft_dataset(pairs, tokenizer, seq_len: int, batch_size: int, seed: int,
                mask_prompt: bool = True) -> grain.IterDataset:
    """Shuffled, repeated batches {"tokens": [B, seq_len + 1], "loss_mask": [B, seq_len]} of
    ``pack_pairs`` windows."""
    tokens, mask = pack_pairs(pairs, tokenizer, seq_len, mask_prompt)
    ds = grain.MapDataset.source([{"tokens": t, "loss_mask": m} for t, m in zip(tokens, mask)])
    ds = ds.shuffle(seed=seed).repeat().batch(batch_size)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))


def _split_batch(batch, config):
    if isinstance(batch, dict):
        tokens, mask = np.asarray(batch["tokens"]), np.asarray(batch["loss_mask"])
    else:
        tokens = np.asarray(batch)
        mask = np.ones((tokens.shape[0], tokens.shape[1] - 1), bool)
    if tokens.shape != (config.batch_size, config.seq_len + 1) or mask.shape != (
            config.batch_size, config.seq_len):
        raise ValueError(f"batch of tokens {tokens.shape} / loss_mask {mask.shape}; the config "
                         f"asks for batch_size={config.batch_size}, seq_len={config.seq_len} "
                         f"(tokens [B, seq_len + 1], loss_mask [B, seq_len])")
    if config.batch_size % config.microbatches:
        raise ValueError(f"batch_size={config.batch_size} does not split into "
                         f"microbatches={config.microbatches}")
    return tokens.astype(np.int32), mask


def train(config, workdir, cfg, params, batches, mesh):
    """Run (or resume) next-token training for ``config.steps`` updates; returns the params.

    Checkpoints (params, optimizer state, iterator state) every ``checkpoint_every`` steps and
    at the end; a restart with the same workdir resumes from the latest one. SIGTERM makes the
    run checkpoint after the current step and return.
    """
    optimizer = _optimizer(config)
    update = make_update_fn(cfg, config)
    params = models.shard_params(cfg, params, mesh)
    # A copy: the update donates its inputs, and the caller's arrays must survive the run.
    replicated = NamedSharding(mesh, P())  # the optimizer's step count; the rest follows params
    state = {"params": jax.tree.map(jnp.copy, params), "opt_state": jax.tree.map(
        lambda x: x if x.ndim else jax.device_put(x, replicated), optimizer.init(params))}
    ckpt = Checkpointer(workdir)
    state, start, meta = ckpt.resume(state, batches)
    nonfinite = meta.get("nonfinite_in_row", 0)
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    writer = metrics.MetricsWriter(workdir, start_step=start + 1)  # keeps steps 1 .. start
    bar = metrics.progress(config.steps, start)
    sharding = models.batch_sharding(mesh)
    try:
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            tokens, mask = jax.device_put(_split_batch(next(batches), config), sharding)
            params, opt_state, out = update(state["params"], state["opt_state"], tokens, mask)
            state.update(params=params, opt_state=opt_state)
            out = {k: float(v) for k, v in jax.device_get(out).items()}
            dt = time.perf_counter() - t0
            out.update({"time/step_s": dt, "throughput/tokens_per_s": tokens.size / dt})
            writer.write(step + 1, out)
            bar.update(step + 1, out)
            if out["skipped"]:
                nonfinite += 1
                print(f"step {step + 1}: update skipped (non-finite loss, gradient or params); "
                      f"{nonfinite} in a row")
                if nonfinite >= config.max_nonfinite_in_row:
                    raise FloatingPointError(
                        f"{nonfinite} steps in a row had non-finite updates; stopping with the "
                        f"last good checkpoint in {workdir}/checkpoints intact")
                continue  # never checkpoint a step whose update failed
            nonfinite = 0
            if terminated or (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                ckpt.save(step + 1, state, {"step": step + 1, "data": batches.get_state(),
                                            "nonfinite_in_row": nonfinite})
            if terminated:
                print(f"SIGTERM: checkpointed step {step + 1}, exiting")
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        writer.close()
        bar.close()
        ckpt.close()
    return state["params"]
