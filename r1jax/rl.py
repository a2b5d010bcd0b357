"""The R1-Zero / reasoning-RL loop: rollouts, host rewards, GRPO updates, reference refresh.

One step (DESIGN.md, "One R1-Zero step"): take B prompts, sample G completions each with the
current policy (the sampler's logprobs are the old-policy logprobs), score them on the host,
compute group-normalised advantages, compute reference logprobs (only when kl_coef > 0), then
make ``num_minibatches`` optimizer updates for each of ``epochs`` passes over the rollout. The
reference becomes a copy of the policy every ``ref_refresh_every`` steps.

Everything jitted is a pure function of (params, opt_state, batch); ``train`` is the host loop
that strings them together, checkpoints, and logs. ``r1jax.main`` builds its inputs from a
config file.
"""

import dataclasses
import functools
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax import grpo, metrics, models, sampling
from r1jax.checkpoint import Checkpointer
from r1jax.models.sharding import BATCH_AXES
from r1jax.optim import make_optimizer


def default_config() -> ml_collections.ConfigDict:
    """Every key the loop reads, with R1-Zero-like defaults; experiments override what they need."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        steps=100,
        prompts_per_step=8,  # B
        group_size=8,  # G
        max_new_tokens=128,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        stop_strings=("</answer>",),  # besides the tokenizer's eos; each must be one token
        correctness_reward="accuracy",  # the reward term whose value > 0.5 counts as correct
        num_minibatches=1,  # R1: 16 per rollout
        epochs=1,  # mu
        microbatches=1,  # gradient accumulation inside one minibatch
        lr=1e-6, warmup_steps=0, schedule="constant", weight_decay=0.0, grad_clip=1.0,
        b1=0.9, b2=0.99,
        kl_coef=0.0, clip_low=0.2, clip_high=0.2,
        aggregation="seq_mean_token_mean", normalize_std=True, length_normalized=False,
        ref_refresh_every=400,
        overlong_filter=False,  # DAPO: truncated completions leave the loss
        overlong_cache_len=0,  # DAPO soft overlong penalty over the last N tokens; 0 = off
        dynamic_sampling=False,  # DAPO: drop zero-variance groups, sample until B remain
        dynamic_sampling_max_batches=4,
        async_rewards=False,  # score step t while step t+1 samples (one step of policy lag;
                              # a resumed run then differs from an uninterrupted one)
        max_nonfinite_in_row=5,
        checkpoint_every=50,
        eval_every=0,  # 0 = no evaluation during training
        samples_logged=4,  # decoded completions written to samples/ at each checkpoint
    ))


@dataclasses.dataclass
class Rollout:
    """B*G scored completions, host arrays, rows b*G .. b*G+G-1 from prompt b."""

    examples: list  # B*G example dicts (each prompt's repeated G times)
    prompts: np.ndarray  # int32 [B*G, P] left-padded
    prompt_mask: np.ndarray  # bool [B*G, P]
    tokens: np.ndarray  # int32 [B*G, N]
    mask: np.ndarray  # bool [B*G, N]
    logprobs: np.ndarray  # float32 [B*G, N], the sampler's
    lengths: np.ndarray  # int32 [B*G]
    texts: list
    rewards: np.ndarray  # float64 [B*G], NaN where unscorable
    terms: dict
    reward_stats: dict


def completion_logprobs(cfg, params, batch, temperature):
    """(logprobs, entropy) [n, N] of the completion tokens under the policy ``params``."""
    tokens = jnp.concatenate([batch["prompts"], batch["tokens"]], axis=1)
    attention = jnp.concatenate([batch["prompt_mask"], jnp.ones_like(batch["mask"])], axis=1)
    logprobs, entropy = models.token_logprobs(cfg, params, tokens, attention, temperature)
    start = batch["prompts"].shape[1] - 1
    return logprobs[:, start:], entropy[:, start:]


def _optimizer(rl):
    return make_optimizer(rl.lr, rl.steps * rl.num_minibatches * rl.epochs, rl.warmup_steps,
                          rl.schedule, rl.weight_decay, rl.b1, rl.b2, rl.grad_clip)


_UPDATE_KEYS = ("temperature", "aggregation", "clip_low", "clip_high", "kl_coef",
                "max_new_tokens", "length_normalized", "lr", "steps", "num_minibatches",
                "epochs", "warmup_steps", "schedule", "weight_decay", "b1", "b2", "grad_clip")


def make_update_fn(cfg, rl):
    """A jitted (params, opt_state, minibatch) -> (params, opt_state, metrics) with donation.

    The minibatch carries a leading microbatch axis; gradients of the loss *sums* are
    accumulated over it and divided once by the total denominator (exact, see grpo.py). An
    update whose loss, gradients or new params are not finite is skipped (params and optimizer
    state unchanged) and reported as ``skipped``. Cached on the settings it depends on, so runs
    in one process with the same settings share one compilation.
    """
    settings = tuple((k, rl[k]) for k in _UPDATE_KEYS)
    return _cached_update_fn(cfg, settings)


@functools.lru_cache(maxsize=16)
def _cached_update_fn(cfg, settings):
    rl = ml_collections.ConfigDict(dict(settings))
    optimizer = _optimizer(rl)
    loss_kwargs = dict(aggregation=rl.aggregation, clip_low=rl.clip_low, clip_high=rl.clip_high,
                       kl_coef=rl.kl_coef, max_len=rl.max_new_tokens,
                       length_normalized=rl.length_normalized)

    def terms_fn(params, mb):
        logprobs, entropy = completion_logprobs(cfg, params, mb, rl.temperature)
        loss_sum, denom, stats = grpo.policy_loss_terms(
            logprobs, mb["logprobs"], mb["ref_logprobs"] if rl.kl_coef else None,
            mb["advantages"], mb["loss_mask"], **loss_kwargs)
        gen = mb["mask"]
        stats["entropy"] = jnp.sum(jnp.where(gen, entropy, 0.0))
        stats["drift"] = jnp.sum(jnp.where(gen, jnp.abs(logprobs - mb["logprobs"]), 0.0))
        stats["generated"] = jnp.sum(gen).astype(jnp.float32)
        return loss_sum, (denom, stats)

    grad_fn = jax.value_and_grad(terms_fn, has_aux=True)

    def micro_step(carry, mb):
        (loss_sum, (denom, stats)), grads = grad_fn(carry[0], mb)
        terms = grpo.combine_terms(carry[1], (loss_sum, denom, stats))
        return (carry[0], terms, jax.tree.map(jnp.add, carry[2], grads)), None

    def update(params, opt_state, minibatches):
        first = jax.tree.map(lambda x: x[0], minibatches)
        (loss_sum, (denom, stats)), grads = grad_fn(params, first)
        rest = jax.tree.map(lambda x: x[1:], minibatches)
        (_, terms, grads), _ = jax.lax.scan(micro_step, (params, (loss_sum, denom, stats), grads),
                                            rest)
        loss, out = grpo.finish_terms(terms)
        grads = jax.tree.map(lambda g: g / jnp.maximum(terms[1], 1.0), grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = [jnp.isfinite(loss)] + [jnp.all(jnp.isfinite(x))
                                         for x in jax.tree.leaves((grads, new_params))]
        ok = jnp.all(jnp.stack(finite))
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(ok, new, old))
        generated = jnp.maximum(terms[2]["generated"], 1.0)
        out.update(loss=loss, grad_norm=optax.tree.norm(grads), skipped=~ok,
                   entropy=terms[2]["entropy"] / generated, drift=terms[2]["drift"] / generated)
        return keep(new_params, params), keep(new_opt_state, opt_state), out

    return jax.jit(update, donate_argnums=(0, 1))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _ref_logprobs(cfg, temperature, params, batch):
    return completion_logprobs(cfg, params, batch, temperature)[0]


class Trainer:
    """Holds the jitted functions, the mesh, the reward scorer and the tokenizer of one run."""

    def __init__(self, rl, cfg, tokenizer, scorer, mesh):
        self.rl, self.cfg, self.tokenizer, self.scorer, self.mesh = rl, cfg, tokenizer, scorer, mesh
        self.optimizer = _optimizer(rl)
        self.update = make_update_fn(cfg, rl)
        self.ref_logprobs = functools.partial(_ref_logprobs, cfg, rl.temperature)
        stop = [tokenizer.eos_id]
        for s in rl.stop_strings:
            token = tokenizer.token_to_id(s)
            if token is None:
                raise ValueError(f"rl.stop_strings: {s!r} is not a single token of the tokenizer")
            stop.append(token)
        self.stop_tokens = tuple(stop)
        self.batch_sharding = NamedSharding(mesh, P(BATCH_AXES))

    def sample(self, params, examples, rng):
        """Dispatch sampling for B examples; returns device arrays (JAX runs it asynchronously)."""
        rl = self.rl
        prompts = [self.tokenizer.encode(ex["prompt"]) for ex in examples]
        out = sampling.generate(self.cfg, params, prompts, rng, num_samples=rl.group_size,
                                max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                                top_p=rl.top_p, top_k=rl.top_k, stop_tokens=self.stop_tokens,
                                pad_id=self.tokenizer.pad_id, mesh=self.mesh)
        return examples, prompts, out

    def score(self, sampled) -> Rollout:
        """Fetch a sampled batch to the host, decode it and score it."""
        examples, prompts, out = sampled
        G = self.rl.group_size
        tokens, mask, logprobs, lengths = jax.device_get(
            (out.tokens, out.mask, out.logprobs, out.lengths))
        texts = [self.tokenizer.decode(row[:n]) for row, n in zip(tokens, lengths)]
        examples = [ex for ex in examples for _ in range(G)]
        rewards, terms, stats = self.scorer.score(texts, examples)
        padded, prompt_mask = sampling.pad_prompts(prompts, sampling.prompt_bucket(
            max(map(len, prompts))), self.tokenizer.pad_id)
        return Rollout(examples, np.repeat(padded, G, 0), np.repeat(prompt_mask, G, 0), tokens,
                       mask, logprobs, lengths, texts, rewards, terms, stats)

    def informative(self, ro: Rollout, sample_more):
        """DAPO dynamic sampling: the rollout cut to B groups whose rewards are not all equal.

        ``sample_more(i)`` samples and scores the i-th extra batch; extra batches are drawn until
        B informative groups exist or ``dynamic_sampling_max_batches`` batches were sampled in
        all. If too few are found, groups with equal rewards fill the batch (they get advantage
        0), so the update keeps its shape. Returns (rollout, batches sampled).
        """
        rl, G = self.rl, self.rl.group_size
        rollouts = [ro]
        while (sum(_informative_groups(r, G).sum() for r in rollouts) < rl.prompts_per_step
               and len(rollouts) < rl.dynamic_sampling_max_batches):
            rollouts.append(sample_more(len(rollouts)))
        merged = _concat(rollouts)
        flags = _informative_groups(merged, G)
        order = np.concatenate([np.flatnonzero(flags), np.flatnonzero(~flags)])
        groups = np.sort(order[:rl.prompts_per_step])
        return _take(merged, (groups[:, None] * G + np.arange(G)).ravel()), len(rollouts)

    def truncated(self, ro: Rollout) -> np.ndarray:
        last = ro.tokens[np.arange(len(ro.lengths)), np.maximum(ro.lengths - 1, 0)]
        return (ro.lengths == self.rl.max_new_tokens) & ~np.isin(last, self.stop_tokens)

    def train_on(self, params, opt_state, ref_params, ro: Rollout, rng):
        """Advantages, reference logprobs and the minibatch updates for one rollout."""
        rl = self.rl
        rewards = ro.rewards.copy()
        if rl.overlong_cache_len:
            rewards += np.asarray(grpo.overlong_penalty(ro.lengths, rl.max_new_tokens,
                                                        rl.overlong_cache_len))
        advantages = np.asarray(grpo.advantages(rewards, rl.group_size, rl.normalize_std))
        loss_mask = ro.mask
        if rl.overlong_filter:
            loss_mask = np.asarray(grpo.overlong_filter_mask(ro.mask, self.truncated(ro)))
        batch = dict(prompts=ro.prompts, prompt_mask=ro.prompt_mask, tokens=ro.tokens,
                     mask=ro.mask, loss_mask=loss_mask, logprobs=ro.logprobs,
                     advantages=advantages.astype(np.float32))
        n_rows, n_mb = len(ro.lengths), rl.num_minibatches
        if n_rows % (n_mb * rl.microbatches):
            raise ValueError(f"{n_rows} rollout rows do not split into num_minibatches={n_mb} "
                             f"x microbatches={rl.microbatches}")
        if rl.kl_coef:  # in minibatch-sized chunks, to bound memory like the updates
            batch["ref_logprobs"] = np.concatenate([np.asarray(self.ref_logprobs(
                ref_params, self._put({k: v[rows] for k, v in batch.items()})))
                for rows in np.split(np.arange(n_rows), n_mb)])
        else:
            batch["ref_logprobs"] = np.zeros_like(ro.logprobs)
        step_metrics = []
        for epoch in range(rl.epochs):
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(rng, epoch), n_rows))
            for rows in np.split(perm, n_mb):
                mb = {k: v[rows].reshape(rl.microbatches, -1, *v.shape[1:])
                      for k, v in batch.items()}
                params, opt_state, m = self.update(params, opt_state, self._put(mb, axis=1))
                step_metrics.append(m)
        first, all_mb = step_metrics[0], jax.device_get(step_metrics)
        out = {k: float(np.mean([m[k] for m in all_mb])) for k in all_mb[0]}
        out["ratio_max"] = float(max(m["ratio_max"] for m in all_mb))
        out["skipped"] = int(sum(bool(m["skipped"]) for m in all_mb))
        out["drift"] = float(first["drift"])  # only the first minibatch is on-policy
        return params, opt_state, out, advantages

    def _put(self, tree, axis=0):
        spec = P(*([None] * axis), BATCH_AXES)
        return jax.device_put(tree, NamedSharding(self.mesh, spec))


def _informative_groups(ro: Rollout, group_size: int) -> np.ndarray:
    """bool [groups]: the group's finite rewards are not all equal (its advantages are not 0)."""
    groups = np.where(np.isfinite(ro.rewards), ro.rewards, np.nan).reshape(-1, group_size)
    with np.errstate(all="ignore"):
        return np.nan_to_num(np.nanmax(groups, 1) - np.nanmin(groups, 1)) > 0


def _concat(rollouts) -> Rollout:
    """Rollouts stacked row-wise; prompts re-padded on the left to the longest bucket."""
    width = max(r.prompts.shape[1] for r in rollouts)

    def left_pad(x, fill):
        return np.pad(x, ((0, 0), (width - x.shape[1], 0)), constant_values=fill)

    return Rollout(
        examples=[ex for r in rollouts for ex in r.examples],
        # The padding's token ids are masked out of attention, so any id serves.
        prompts=np.concatenate([left_pad(r.prompts, 0) for r in rollouts]),
        prompt_mask=np.concatenate([left_pad(r.prompt_mask, False) for r in rollouts]),
        texts=[t for r in rollouts for t in r.texts],
        terms={k: np.concatenate([r.terms[k] for r in rollouts]) for k in rollouts[0].terms},
        reward_stats={k: sum(r.reward_stats[k] for r in rollouts)
                      for k in rollouts[0].reward_stats},
        **{f: np.concatenate([getattr(r, f) for r in rollouts])
           for f in ("tokens", "mask", "logprobs", "lengths", "rewards")})


def _take(ro: Rollout, rows) -> Rollout:
    return dataclasses.replace(
        ro, examples=[ro.examples[i] for i in rows], texts=[ro.texts[i] for i in rows],
        terms={k: v[rows] for k, v in ro.terms.items()},
        **{f: getattr(ro, f)[rows] for f in ("prompts", "prompt_mask", "tokens", "mask",
                                              "logprobs", "lengths", "rewards")})


def step_metrics(rl, ro: Rollout, train_out: dict, advantages, trunc) -> dict:
    """The per-step metrics of issue 6 from one rollout and its updates."""
    zero_std = ~_informative_groups(ro, rl.group_size)
    out = {"reward/total": float(np.nanmean(ro.rewards)) if np.isfinite(ro.rewards).any() else 0.0,
           "reward/unscorable_frac": float(np.mean(~np.isfinite(ro.rewards))),
           "adv/zero_std_frac": float(zero_std.mean()),
           "adv/abs_mean": float(np.mean(np.abs(advantages))),
           "loss": train_out["loss"], "grad_norm": train_out["grad_norm"],
           "kl": train_out.get("kl", 0.0), "clip/low_frac": train_out["clip_frac_low"],
           "clip/high_frac": train_out["clip_frac_high"], "ratio/mean": train_out["ratio_mean"],
           "ratio/max": train_out["ratio_max"], "entropy": train_out["entropy"],
           "rollout/logprob_drift": train_out["drift"], "updates/skipped": train_out["skipped"]}
    for name, values in ro.terms.items():
        out[f"reward/{name}"] = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    for key, value in ro.reward_stats.items():  # wall-clock figures go with the other timings
        out[key.replace("reward/", "time/reward_") if key.endswith("_s") else key] = float(value)
    judge = ro.terms.get(rl.correctness_reward, ro.rewards)
    correct = np.nan_to_num(judge) > 0.5
    formatted = (ro.terms["format"] >= 1.0 if "format" in ro.terms
                 else np.ones(len(ro.texts), bool))
    out.update(metrics.rollout_stats(ro.texts, ro.lengths, correct, trunc, formatted))
    return out


def train(rl, workdir, cfg, params, tokenizer, scorer, examples, mesh, evaluate=None):
    """Run (or resume) R1-Zero training; returns the final params.

    ``examples`` is an iterator of batches (lists of ``prompts_per_step`` example dicts, each
    with a ``prompt``) that has ``get_state``/``set_state`` (a grain DatasetIterator).
    ``evaluate(step, params) -> dict`` is called every ``rl.eval_every`` steps when given. SIGTERM (TPU preemption) makes the run
    checkpoint at the end of the current step and return.
    """
    trainer = Trainer(rl, cfg, tokenizer, scorer, mesh)
    params = models.shard_params(cfg, params, mesh)
    # Copies: the updates donate their inputs, and the caller's arrays must survive the run.
    state = {"params": jax.tree.map(jnp.copy, params), "ref_params": jax.tree.map(jnp.copy, params),
             "opt_state": trainer.optimizer.init(params)}
    ckpt = Checkpointer(workdir)
    state, start, meta = ckpt.resume(state, examples)
    nonfinite = meta.get("nonfinite_in_row", 0)
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    writer = metrics.MetricsWriter(workdir, start_step=start + 1)  # keeps steps 1 .. start
    bar = metrics.progress(rl.steps, start)
    base_rng = jax.random.key(rl.seed)
    pending = None

    def next_batch():
        batch = next(examples)
        if len(batch) != rl.prompts_per_step:
            raise ValueError(f"the data gave a batch of {len(batch)} examples; "
                             f"rl.prompts_per_step is {rl.prompts_per_step}")
        return batch

    def save(step):
        ckpt.save(step, state, {"step": step, "data": examples.get_state(),
                                "nonfinite_in_row": nonfinite})

    try:
        for step in range(start, rl.steps):
            rng = jax.random.fold_in(base_rng, step)
            t0 = time.perf_counter()
            sampled = pending or trainer.sample(state["params"], next_batch(), rng)
            if rl.async_rewards and step + 1 < rl.steps:  # sample t+1 while the host scores t
                pending = trainer.sample(state["params"], next_batch(),
                                         jax.random.fold_in(base_rng, step + 1))
            jax.block_until_ready(sampled[2].tokens)
            t1 = time.perf_counter()
            ro = trainer.score(sampled)
            if rl.dynamic_sampling:
                ro, n_batches = trainer.informative(ro, lambda i: trainer.score(trainer.sample(
                    state["params"], next_batch(), jax.random.fold_in(rng, 1000 + i))))
            t2 = time.perf_counter()
            params, opt_state, train_out, adv = trainer.train_on(
                state["params"], state["opt_state"], state["ref_params"], ro,
                jax.random.fold_in(rng, 1))
            state.update(params=params, opt_state=opt_state)
            t3 = time.perf_counter()
            nonfinite = nonfinite + 1 if train_out["skipped"] else 0
            out = step_metrics(rl, ro, train_out, adv, trainer.truncated(ro))
            if rl.dynamic_sampling:
                out["dynamic_sampling/batches"] = n_batches
            out.update({"time/sample_s": t1 - t0, "time/reward_s": t2 - t1,
                        "time/train_s": t3 - t2, "rollout/policy_lag": int(rl.async_rewards),
                        "throughput/tokens_per_s": float(ro.lengths.sum()) / (t3 - t0)})
            if (step + 1) % rl.ref_refresh_every == 0:
                state["ref_params"] = jax.tree.map(jnp.copy, state["params"])
            if evaluate is not None and rl.eval_every and (step + 1) % rl.eval_every == 0:
                out.update(evaluate(step + 1, state["params"]))
            writer.write(step + 1, out)
            if step == start or (step + 1) % rl.checkpoint_every == 0:
                metrics.write_samples(workdir, step + 1, [
                    {"prompt": ro.examples[i]["prompt"], "completion": ro.texts[i],
                     "reward": float(ro.rewards[i])}
                    for i in range(0, len(ro.texts), max(1, len(ro.texts) // rl.samples_logged))])
            bar.update(step + 1, out)
            if out["adv/zero_std_frac"] == 1.0:
                print(f"step {step + 1}: every group has equal rewards; this step learned nothing")
            if train_out["skipped"]:
                print(f"step {step + 1}: {train_out['skipped']} update(s) skipped (non-finite "
                      f"loss, gradient or params); {nonfinite} step(s) in a row")
                if nonfinite >= rl.max_nonfinite_in_row:
                    raise FloatingPointError(
                        f"{nonfinite} steps in a row had non-finite updates; stopping with the "
                        f"last good checkpoint in {workdir}/checkpoints intact")
                continue  # never checkpoint a step whose update failed
            if terminated or (step + 1) % rl.checkpoint_every == 0 or step + 1 == rl.steps:
                save(step + 1)
            if terminated:
                print(f"SIGTERM: checkpointed step {step + 1}, exiting")
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        writer.close()
        bar.close()
        ckpt.close()
    return state["params"]
