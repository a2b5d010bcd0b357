"""The RL job (R1-Zero, reasoning RL): rollouts, host rewards, GRPO updates, reference refresh.

One step: take B prompts, sample G completions each with the current policy (the sampler's
logprobs are the old-policy logprobs), score them on the host (`rollout.py`), compute
group-normalised advantages and, when kl_coef > 0, reference logprobs, then make
``num_minibatches`` optimizer updates for each of ``epochs`` passes over the rollout (shuffled
in units of rows that share a prompt, which the update computes once per unit: `prompt_share`).
The reference becomes a copy of the policy every ``ref_refresh_every`` steps. The run skeleton
(resume, metrics, SIGTERM, checkpoints, the non-finite guard) is `loop.run`'s.

Everything jitted is a pure function of (params, opt_state, batch) with the static settings
(`UpdateSettings`) as a hashable argument; `train` strings them together, and `job` builds its
inputs from an experiment config (`python -m r1jax.main --config=experiments/X.py`).
"""

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from r1jax import grpo, loop, metrics, models, multihost, optim
from r1jax.mesh import data_parallel_size
from r1jax.rollout import Collector, Rollout, RolloutSettings, rollout_metrics


def default_config() -> ml_collections.ConfigDict:
    """Every key the loop reads, with R1-Zero-like defaults; experiments override what they need."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        steps=100,
        prompts_per_step=8,  # B
        group_size=8,  # G
        max_new_tokens=128,
        compute_dtype="auto",  # forward/backward dtype; params and optimizer state stay float32
        logprob_chunk=0,  # > 0: log-probs over this many positions at a time, never [B, T, V]
        layers="loop",  # "remat": keep only each block's input for the backward pass; "scan"
                        # also compiles one block instead of L (models.token_logprobs)
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        stop_strings=("</answer>",),  # besides the tokenizer's eos; text of any length
        correctness_reward="accuracy",  # the reward term whose value > 0.5 counts as correct
        num_minibatches=1,  # R1: 16 per rollout
        epochs=1,  # mu
        microbatches=1,  # gradient accumulation inside one minibatch
        lr=1e-6, warmup_steps=0, schedule="constant", weight_decay=0.0, grad_clip=1.0,
        b1=0.9, b2=0.99, end_lr_fraction=0.0,  # cosine decays to lr x end_lr_fraction
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


@dataclasses.dataclass(frozen=True)
class UpdateSettings:
    """What the jitted GRPO update depends on besides its arrays (a static argument)."""

    optimizer: optim.OptimizerSettings
    compute_dtype: str  # "float32" or "bfloat16"; logits, log-probs and the loss are float32
    logprob_chunk: int  # 0: dense [B, T, V] logits; else positions per chunk (token_logprobs)
    layers: str  # how the training and reference passes run the blocks: loop, remat, scan
    temperature: float
    aggregation: str
    clip_low: float
    clip_high: float
    kl_coef: float
    max_len: int
    length_normalized: bool

    def __post_init__(self):
        if self.aggregation not in grpo.AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is not one of {grpo.AGGREGATIONS}")
        if (not self.temperature > 0 or min(self.clip_low, self.clip_high, self.kl_coef) < 0
                or self.logprob_chunk < 0):
            raise ValueError(f"the update needs temperature > 0 and non-negative clip_low, "
                             f"clip_high, kl_coef and logprob_chunk, got {self}")
        if self.layers not in models.LAYER_MODES:
            raise ValueError(f"layers {self.layers!r} is not one of {models.LAYER_MODES}")

    @classmethod
    def from_config(cls, c) -> "UpdateSettings":
        total = int(c.steps) * int(c.num_minibatches) * int(c.epochs)
        return cls(optim.OptimizerSettings.from_config(c, total),
                   optim.compute_dtype(c.compute_dtype), int(c.logprob_chunk), str(c.layers),
                   float(c.temperature),
                   c.aggregation, float(c.clip_low), float(c.clip_high), float(c.kl_coef),
                   int(c.max_new_tokens), bool(c.length_normalized))


def completion_logprobs(cfg, s: UpdateSettings, params, batch):
    """(logprobs, entropy) [n, N] of the completion tokens under the policy ``params`` (cast to
    the compute dtype), computed as ``s`` says. ``batch["prompts"]`` holds one prompt per k
    consecutive completion rows (`prompt_share`): each is run once for its k rows."""
    return models.continuation_logprobs(
        cfg, optim.cast_floating(params, s.compute_dtype), batch["prompts"],
        batch["prompt_mask"], batch["tokens"], s.temperature, s.logprob_chunk, layers=s.layers)


def prompt_share(c, mesh) -> int:
    """k, the completion rows of the update that share one prompt row: the largest divisor of G
    that divides every device's rows of a microbatch. With whole groups on a device (k = G) the
    update computes each prompt once per group rather than G times; rollout rows come in
    groups of G completions of one prompt, so k consecutive rows always share theirs."""
    rows = c.prompts_per_step * c.group_size // (
        c.num_minibatches * c.microbatches * data_parallel_size(mesh))
    return math.gcd(c.group_size, rows)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def update(cfg, s: UpdateSettings, params, opt_state, minibatches):
    """One GRPO optimizer update: (params, opt_state, metrics), donating params and opt_state.

    ``minibatches`` carries a leading microbatch axis; the loss sums are accumulated over it and
    divided once (exact, see optim.py). A non-finite update is skipped (``skipped``).
    """
    def terms_fn(p, mb):
        logprobs, entropy = completion_logprobs(cfg, s, p, mb)
        terms = grpo.policy_loss_terms(
            logprobs, mb["logprobs"], mb["ref_logprobs"] if s.kl_coef else None,
            mb["advantages"], mb["loss_mask"], aggregation=s.aggregation, clip_low=s.clip_low,
            clip_high=s.clip_high, kl_coef=s.kl_coef, max_len=s.max_len,
            length_normalized=s.length_normalized)
        gen = mb["mask"]
        return terms._replace(stats={
            **terms.stats, "entropy": jnp.sum(jnp.where(gen, entropy, 0.0)),
            "drift": jnp.sum(jnp.where(gen, jnp.abs(logprobs - mb["logprobs"]), 0.0)),
            "generated": jnp.sum(gen).astype(jnp.float32)})

    params, opt_state, terms, out = optim.guarded_update(
        terms_fn, s.optimizer.make(), params, opt_state, minibatches)
    generated = jnp.maximum(terms.stats["generated"], 1.0)
    out.update(grpo.finish_terms(terms)[1], entropy=terms.stats["entropy"] / generated,
               drift=terms.stats["drift"] / generated)
    return params, opt_state, out


@functools.partial(jax.jit, static_argnums=(0, 1))
def reference_logprobs(cfg, s: UpdateSettings, params, batch):
    return completion_logprobs(cfg, s, params, batch)[0]


def _put(mesh, tree, axis=0):
    """Host arrays (the same on every process) placed with dimension ``axis`` split over the
    mesh's data axes."""
    return jax.device_put(tree, models.batch_sharding(mesh, ndim=axis + 1, axis=axis))


def learn(c, cfg, s: UpdateSettings, state: dict, ro: Rollout, rng, mesh):
    """Advantages, reference logprobs and the minibatch updates for one rollout: (state with the
    new params and optimizer state, update metrics, advantages)."""
    rewards = ro.rewards.copy()
    if c.overlong_cache_len:
        rewards += np.asarray(grpo.overlong_penalty(ro.lengths, c.max_new_tokens,
                                                    c.overlong_cache_len))
    advantages = np.asarray(grpo.advantages(rewards, c.group_size, c.normalize_std))
    loss_mask = np.asarray(grpo.overlong_filter_mask(ro.mask, ro.truncated)) \
        if c.overlong_filter else ro.mask
    batch = dict(tokens=ro.tokens, mask=ro.mask, loss_mask=loss_mask, logprobs=ro.logprobs,
                 advantages=advantages.astype(np.float32))
    # Minibatches are drawn in units of `prompt_share` consecutive rows, one prompt row each.
    share = prompt_share(c, mesh)
    units = dict(prompts=ro.prompts[::share], prompt_mask=ro.prompt_mask[::share])
    n_units = len(ro.lengths) // share

    def take(unit_ids):  # the batch of these units: their prompts, and their rows
        rows = (unit_ids[:, None] * share + np.arange(share)).ravel()
        return {**{name: v[unit_ids] for name, v in units.items()},
                **{name: v[rows] for name, v in batch.items()}}

    if s.kl_coef:  # in microbatch-sized chunks, to bound memory as the updates do
        batch["ref_logprobs"] = np.concatenate([multihost.fetch(reference_logprobs(
            cfg, s, state["ref_params"], _put(mesh, take(ids))))
            for ids in np.split(np.arange(n_units), c.num_minibatches * c.microbatches)])
    else:
        batch["ref_logprobs"] = np.zeros_like(ro.logprobs)
    params, opt_state, outs = state["params"], state["opt_state"], []
    for epoch in range(c.epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(rng, epoch), n_units))
        for ids in np.split(perm, c.num_minibatches):
            mb = optim.split_microbatches(take(ids), c.microbatches)
            params, opt_state, m = update(cfg, s, params, opt_state, _put(mesh, mb, axis=1))
            outs.append(m)
    outs = multihost.fetch(outs)
    out = {k: float(np.mean([m[k] for m in outs])) for k in outs[0]}
    out["ratio_max"] = float(max(m["ratio_max"] for m in outs))
    out["skipped"] = int(sum(bool(m["skipped"]) for m in outs))
    out["drift"] = float(outs[0]["drift"])  # only the first minibatch is on-policy
    return {**state, "params": params, "opt_state": opt_state}, out, advantages


def update_metrics(out: dict, advantages) -> dict:
    """The logged names of `learn`'s metrics."""
    return {"adv/abs_mean": float(np.mean(np.abs(advantages))), "loss": out["loss"],
            "grad_norm": out["grad_norm"], "kl": out.get("kl", 0.0),
            "clip/low_frac": out["clip_frac_low"], "clip/high_frac": out["clip_frac_high"],
            "ratio/mean": out["ratio_mean"], "ratio/max": out["ratio_max"],
            "entropy": out["entropy"], "rollout/logprob_drift": out["drift"],
            "updates/skipped": out["skipped"]}


def check_batch(c, mesh) -> None:
    """The prompts split over the mesh's data-parallel devices, and each microbatch too."""
    data_size = data_parallel_size(mesh)
    if c.prompts_per_step % data_size:
        raise ValueError(f"prompts_per_step={c.prompts_per_step} does not split over the mesh's "
                         f"{data_size} data-parallel devices")
    if (c.prompts_per_step * c.group_size) % (c.num_minibatches * c.microbatches * data_size):
        raise ValueError(f"{c.prompts_per_step * c.group_size} rollout rows do not split into "
                         f"num_minibatches={c.num_minibatches} x microbatches={c.microbatches} "
                         f"x {data_size} data-parallel devices")


def train(c, workdir, cfg, params, tokenizer, scorer, examples, mesh,
          evaluate=None) -> loop.RunResult:
    """Run (or resume) RL training with settings ``c`` (``default_config``'s keys).

    ``examples`` is an iterator of batches (lists of ``prompts_per_step`` example dicts, each
    with a ``prompt``) that has ``get_state``/``set_state`` (a grain DatasetIterator).
    ``evaluate(step, params) -> dict`` is called every ``c.eval_every`` steps when given.
    """
    settings = UpdateSettings.from_config(c)
    collector = Collector(RolloutSettings.from_config(c), cfg, tokenizer, scorer, mesh)
    check_batch(c, mesh)
    params = models.shard_params(cfg, params, mesh)
    # Copies: the updates donate their inputs, and the caller's arrays must survive the run.
    state = {"params": jax.tree.map(jnp.copy, params), "ref_params": jax.tree.map(jnp.copy, params),
             "opt_state": optim.init_opt_state(settings.optimizer.make(), params, mesh)}
    base_rng, pending, sampled_steps = jax.random.key(c.seed), [], []

    def step_fn(state, step):
        rng = jax.random.fold_in(base_rng, step)
        t0 = time.perf_counter()
        sampled = (pending.pop() if pending
                   else collector.sample(state["params"], next(examples), rng))
        if c.async_rewards and step + 1 < c.steps:  # sample t+1 while the host scores t
            pending.append(collector.sample(state["params"], next(examples),
                                            jax.random.fold_in(base_rng, step + 1)))
        jax.block_until_ready(sampled.out.tokens)
        t1 = time.perf_counter()
        ro, batches = collector.score(sampled), 1
        if c.dynamic_sampling:
            def sample_more(i):
                return collector.score(collector.sample(state["params"], next(examples),
                                                        jax.random.fold_in(rng, 1000 + i)))
            ro, batches = collector.fill_informative(ro, sample_more)
        t2 = time.perf_counter()
        state, out, advantages = learn(c, cfg, settings, state, ro, jax.random.fold_in(rng, 1),
                                       mesh)
        t3 = time.perf_counter()
        logged = {**rollout_metrics(ro, c.group_size, c.correctness_reward),
                  **update_metrics(out, advantages),
                  "time/sample_s": t1 - t0, "time/reward_s": t2 - t1, "time/train_s": t3 - t2,
                  "rollout/policy_lag": int(c.async_rewards),
                  "tokens": float(ro.lengths.sum()),  # sampled: what the update trains on
                  "throughput/tokens_per_s": float(ro.lengths.sum()) / (t3 - t0)}
        if c.dynamic_sampling:
            logged["dynamic_sampling/batches"] = batches
        if (step + 1) % c.ref_refresh_every == 0:
            state = {**state, "ref_params": jax.tree.map(jnp.copy, state["params"])}
        if evaluate is not None and c.eval_every and (step + 1) % c.eval_every == 0:
            logged.update(evaluate(step + 1, state["params"]))
        if not sampled_steps or (step + 1) % c.checkpoint_every == 0:  # this process's first too
            sampled_steps.append(step)
            if multihost.is_primary():
                write_samples(workdir, step + 1, ro, c.samples_logged)
        if logged["adv/zero_std_frac"] == 1.0:
            print(f"step {step + 1}: every group has equal rewards; this step learned nothing")
        return loop.StepResult(state, logged, out["skipped"])

    return loop.run(workdir, loop.LoopSettings.from_config(c), state, examples, step_fn)


def write_samples(workdir, step: int, ro: Rollout, count: int) -> None:
    """About ``count`` of the rollout's completions, evenly spaced, into workdir/samples/."""
    rows = range(0, len(ro.texts), max(1, len(ro.texts) // count))
    metrics.write_samples(workdir, step, [{"prompt": ro.examples[i]["prompt"],
                                           "completion": ro.texts[i],
                                           "reward": float(ro.rewards[i])} for i in rows])


def job(config, workdir: str) -> bool:
    """R1-Zero from ``config.model`` on ``config.data``'s prompt sources, else the toy world's
    problems; when the config has a ``pretrain`` section, from the toy world's base model,
    pretrained first. A finished run ends with the final evaluation, plots, results.md and its
    policy as an HF checkpoint in ``config.export``; a stopped one (SIGTERM) resumes when
    rerun. Returns whether the run finished."""
    from r1jax import evaluate, export, plots, policy, rewards, scenarios, toy
    from r1jax.data import pipeline, prompts
    from r1jax.mesh import mesh_from_config

    # Everything that can be checked is, before a model is loaded or compiled: the checkpoint
    # against the named model, the tokenizer against the embedding, every prompt source's rows
    # and their prompts' lengths, the rewards' fields, the evaluation sets.
    cfg = policy.model_config(config.model)
    tokenizer, tokenizer_source = toy.job_tokenizer(config, workdir, cfg)
    prompts.check_room(config, cfg.max_position, "rl.max_new_tokens")
    mesh = mesh_from_config(config.mesh)
    check_batch(config.rl, mesh)
    prompt_tokens = lambda prompt: len(tokenizer.encode(prompt))  # noqa: E731
    train_examples = scenarios.tag_reasoning(config, prompts.prompt_examples(config, prompt_tokens))
    general = prompts.general_examples(config, prompt_tokens)
    specs, scoped = scenarios.model_specs(config), scenarios.scoped_rewards(config)
    weights = scenarios.rule_weights(config, specs)
    rewards.check_fields(weights, train_examples + general, scoped)
    shard = multihost.row_block(mesh, config.rl.prompts_per_step)  # this process's rows
    examples = iter(pipeline.prompt_dataset(
        train_examples, config.rl.prompts_per_step, config.rl.seed, shard=shard))
    if general:  # R1 §2.3.4: general prompts in the last steps only
        count = scenarios.general_batch_rows(config, mesh)
        examples = scenarios.WithGeneral(examples, iter(pipeline.prompt_dataset(
            general, config.general.prompts_per_step, config.rl.seed, shard=shard)),
            config.general.from_step, count)
    hook = evaluate.hook_from_config(config, cfg, tokenizer, mesh) if config.rl.eval_every else None
    reward_models = [scenarios.RewardModel(name, spec, mesh) for name, spec in specs.items()]
    cfg, params = policy.load_policy(config.model, mesh=mesh)
    if "pretrain" in config:
        base = toy.base_model(config, workdir, cfg, params, tokenizer, mesh)
        if base is None:
            return False  # SIGTERM during pretraining: checkpointed; a rerun resumes it
        params = base[1]
    base_eval = hook(0, params) if hook else {}
    if base_eval:
        metrics.write_evaluation(workdir, base_eval, "base_evaluation.json")
    with rewards.RewardScorer(weights, config.reward_workers, config.reward_timeout_s,
                              scoped & weights.keys()) as pool:
        scorer = scenarios.ModelScorer(pool, reward_models, dict(config.rewards), scoped) \
            if reward_models else pool
        result = train(config.rl, workdir, cfg, params, tokenizer, scorer, examples, mesh, hook)
    if result.finished:
        final = result.state["params"]
        final_eval = hook(config.rl.steps, final) if hook else {}
        if final_eval:
            metrics.write_evaluation(workdir, final_eval)
        export.write_final(config, workdir, cfg, final, tokenizer_source)
        if multihost.is_primary():
            plots.write_report(workdir, base_eval, final_eval)
    return result.finished
