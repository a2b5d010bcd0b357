"""The R1-Zero loop on a tiny random model: it learns, shards, resumes exactly, guards NaNs."""

import dataclasses
import json
import os
import sys

import jax
import numpy as np
import pytest

from r1jax import metrics, models, rewards, rl, rollout, tokenizers
from r1jax.checkpoint import Checkpointer
from r1jax.mesh import make_mesh

sys.path.insert(0, os.path.dirname(__file__))  # reward workers import rule_rewards from here
import rule_rewards

rewards.register("test_share_of_a", rule_rewards.share_of_a)
CFG = models.get_config("tiny", vocab_size=320)
TIMING = ("time/", "throughput/")


class ListIterator:
    """Checkpointable batches of all the examples, repeated (the interface of a grain iterator)."""

    def __init__(self, examples):
        self.examples, self.index = examples, 0

    def __next__(self):
        self.index += 1
        return list(self.examples)

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(list("abcdefghij "), size=60)) for _ in range(300)]
    prefix = str(tmp_path_factory.mktemp("tok") / "letters")
    tok = tokenizers.train_sentencepiece(lines, prefix, vocab_size=300)
    assert tok.vocab_size <= CFG.vocab_size
    return tok


@pytest.fixture(scope="module")
def scorer():
    with rewards.RewardScorer({"test_share_of_a": 1.0}, num_workers=1, timeout_s=30) as s:
        yield s


def config(**overrides):
    c = rl.default_config()
    c.update(dict(steps=30, prompts_per_step=4, group_size=8, max_new_tokens=8, lr=1e-2,
                  warmup_steps=0, checkpoint_every=10, stop_strings=()))
    c.update(overrides)
    return c


def examples():
    return ListIterator([{"prompt": p} for p in ("abc", "hij ab", "de", "ffff gh")])


def spy(monkeypatch):
    """Records the rollout of every step (rl.learn's) and the minibatches and metrics of every
    optimizer update (rl.update's), as host arrays."""
    seen = {"rollouts": [], "minibatches": [], "updates": []}
    learn, update = rl.learn, rl.update

    def learn_spy(c, cfg, s, state, ro, *args):
        seen["rollouts"].append(ro)
        return learn(c, cfg, s, state, ro, *args)

    def update_spy(cfg, s, params, opt_state, minibatches):
        seen["minibatches"].append(jax.tree.map(np.asarray, minibatches))
        out = update(cfg, s, params, opt_state, minibatches)
        seen["updates"].append(jax.tree.map(np.asarray, out[2]))
        return out

    monkeypatch.setattr(rl, "learn", learn_spy)
    monkeypatch.setattr(rl, "update", update_spy)
    return seen


def run(workdir, tokenizer, scorer, mesh=None, params=None, **overrides):
    params = models.init(CFG, jax.random.key(0)) if params is None else params
    mesh = mesh or make_mesh(devices=jax.devices()[:1])
    result = rl.train(config(**overrides), str(workdir), CFG, params, tokenizer, scorer,
                      examples(), mesh)
    return result, metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))


def test_a_tiny_random_model_learns_a_rule_reward(tmp_path, tokenizer, scorer):
    initial = models.init(CFG, jax.random.key(0))
    result, history = run(tmp_path, tokenizer, scorer, params=initial)
    assert result.finished and result.step == 30
    final = result.state["params"]
    # The reward starts at chance (a is one of the tokenizer's ten letters: 0.1) and can rise to
    # 1 (nothing but a's). Over six seeds of the init and the rng: first step 0.03-0.10, last
    # three steps 1.0 in all six (the slowest passed 0.8 at step 23 and 0.95 at step 26).
    first, last = history[0]["reward/total"], np.mean([h["reward/total"] for h in history[-3:]])
    assert first < 0.2 and last > 0.8, (first, last)
    assert max(h["adv/zero_std_frac"] for h in history[:5]) < 1.0
    changed = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                           final, initial)
    assert min(jax.tree.leaves(changed)) > 0.0  # every parameter moved
    for key in ("reward/total", "accuracy", "length/mean", "reflect/rate", "kl", "entropy",
                "clip/low_frac", "clip/high_frac", "rollout/logprob_drift",
                "adv/zero_std_frac", "time/sample_s", "time/reward_s", "time/train_s",
                "throughput/tokens_per_s", "reward/test_share_of_a_errors"):
        assert key in history[0], key
    # The sampler's logprobs are the training forward pass's, up to float noise.
    assert max(h["rollout/logprob_drift"] for h in history) < 1e-4
    assert os.listdir(tmp_path / "samples")


def assert_same_update(actual, desired):
    """The logged update of two runs agrees to float32 rounding. On the first step the policy is
    the reference and the ratio is 1, so kl, and a sequence-mean loss (minus the mean of zero-mean
    advantages), are 0 up to rounding of O(1) terms: an absolute tolerance, not a relative one,
    judges those (a relative one compared -4e-8 with -4e-9 and failed on one CPU)."""
    for key in ("reward/total", "loss", "grad_norm", "kl", "entropy", "ratio/mean"):
        np.testing.assert_allclose(actual[key], desired[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_sharded_first_step_equals_single_device(tmp_path, tokenizer, scorer):
    _, single = run(tmp_path / "one", tokenizer, scorer, steps=1, kl_coef=0.1)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    _, sharded = run(tmp_path / "eight", tokenizer, scorer, mesh=mesh, steps=1, kl_coef=0.1)
    assert sharded[0]["reward/total"] == single[0]["reward/total"]  # same samples
    assert_same_update(sharded[0], single[0])


def test_resume_gives_the_state_and_metrics_of_an_uninterrupted_run(tmp_path, tokenizer,
                                                                   scorer):
    kwargs = dict(steps=4, checkpoint_every=2, num_minibatches=2, epochs=2, kl_coef=0.05,
                  ref_refresh_every=3)
    straight_run, straight = run(tmp_path / "straight", tokenizer, scorer, **kwargs)
    # A run stopped after its step-3 checkpoint, before step 4 completed.
    run(tmp_path / "resumed", tokenizer, scorer, **{**kwargs, "steps": 3})
    assert Checkpointer(str(tmp_path / "resumed")).latest_step() == 3
    resumed_run, resumed = run(tmp_path / "resumed", tokenizer, scorer, **kwargs)
    # Policy, reference and optimizer state (count and moments), bit for bit.
    jax.tree.map(np.testing.assert_array_equal, straight_run.state, resumed_run.state)
    assert [h["step"] for h in resumed] == list(range(1, 5))
    for a, b in zip(straight, resumed):
        assert {k: v for k, v in a.items() if not k.startswith(TIMING)} == \
               {k: v for k, v in b.items() if not k.startswith(TIMING)}


def test_non_finite_updates_are_skipped_then_the_run_stops(tmp_path, tokenizer, scorer):
    run(tmp_path, tokenizer, scorer, steps=2, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(tmp_path, tokenizer, scorer, steps=10, lr=float("nan"), max_nonfinite_in_row=3)
    assert Checkpointer(str(tmp_path)).latest_step() == 2  # the last good checkpoint
    history = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert [h["updates/skipped"] for h in history[2:]] == [1, 1, 1]
    with open(tmp_path / "metrics.jsonl") as f:
        assert all(json.loads(line) for line in f)


def test_dynamic_sampling_keeps_only_informative_groups(tmp_path, tokenizer, scorer):
    """Groups with equal rewards are dropped and more batches sampled until B remain."""
    ro = rollout.Rollout(
        examples=[{"prompt": str(i // 2)} for i in range(8)],
        prompts=np.zeros((8, 4), np.int32), prompt_mask=np.ones((8, 4), bool),
        tokens=np.arange(8 * 3).reshape(8, 3), mask=np.ones((8, 3), bool),
        logprobs=np.zeros((8, 3), np.float32), lengths=np.full(8, 3),
        truncated=np.zeros(8, bool), texts=[str(i) for i in range(8)],
        rewards=np.array([1, 1, 0, 1, 1, 1, np.nan, 0.5]), terms={"x": np.arange(8.0)},
        reward_stats={"reward/x_errors": 1})
    settings = rollout.RolloutSettings.from_config(config(
        prompts_per_step=4, group_size=2, dynamic_sampling_max_batches=3))
    collector = rollout.Collector(settings, CFG, tokenizer, scorer,
                                  make_mesh(devices=jax.devices()[:1]))
    extra = dataclasses.replace(ro, prompts=np.zeros((8, 2), np.int32),
                                prompt_mask=np.ones((8, 2), bool), rewards=np.array(
                                    [0, 1, 0, 0.5, 2, 3, 1, 1.0]),
                                texts=[f"x{i}" for i in range(8)])
    out, batches = collector.fill_informative(ro, lambda i: extra)
    assert batches == 2
    # Informative: the first batch's group 1 ([0, 1]; group 3 has one finite reward), then
    # the extra batch's groups 0, 1 and 2; the batch is full after two batches.
    assert out.texts == ["2", "3", "x0", "x1", "x2", "x3", "x4", "x5"]
    assert out.prompts.shape == (8, 4) and not out.prompt_mask[4:, :2].any()
    assert out.terms["x"].tolist() == [2, 3, 0, 1, 2, 3, 4, 5]  # every per-row field follows
    assert out.reward_stats == {"reward/x_errors": 2}  # counts over all batches sampled


def test_a_layers_typo_is_an_error_before_compile():
    with pytest.raises(ValueError, match="layers 'remt' is not one of"):
        rl.UpdateSettings.from_config(config(layers="remt"))


def test_each_completion_counts_as_correct_by_the_reward_its_example_names():
    """Mixed sources: accuracy judges the MATH rows, countdown the Countdown rows (NaN where a
    scoped reward did not apply), the configured correctness reward the rows naming none."""
    n = 4
    ro = rollout.Rollout(
        examples=[{"reward": "accuracy"}, {"reward": "countdown"}, {"reward": "countdown"}, {}],
        prompts=np.zeros((n, 2), np.int32), prompt_mask=np.ones((n, 2), bool),
        tokens=np.zeros((n, 3), np.int32), mask=np.ones((n, 3), bool),
        logprobs=np.zeros((n, 3), np.float32), lengths=np.full(n, 3),
        truncated=np.zeros(n, bool), texts=["a"] * n, rewards=np.array([1.0, 1.0, 0.1, 1.0]),
        terms={"accuracy": np.array([1.0, np.nan, np.nan, 1.0]),
               "countdown": np.array([np.nan, 1.0, 0.1, 0.0])}, reward_stats={})
    assert rollout.rollout_metrics(ro, 2, "accuracy")["accuracy"] == 0.75
    assert rollout.rollout_metrics(ro, 2, "countdown")["accuracy"] == 0.5
    # The format rate is the rewarded format's: R1's readable one where the run rewards it.
    assert rollout.rollout_metrics(ro, 2, "accuracy")["format_rate"] == 1.0  # no format term
    ro.terms.update(format=np.array([1.0, 1.0, 0.0, 0.0]),
                    summary_format=np.array([0.0, 0.0, 0.0, 1.0]))
    assert rollout.rollout_metrics(ro, 2, "accuracy")["format_rate"] == 0.25
    del ro.terms["summary_format"]
    assert rollout.rollout_metrics(ro, 2, "accuracy")["format_rate"] == 0.5


def test_dynamic_sampling_in_the_loop_samples_until_b_groups_are_informative(
        tmp_path, tokenizer, scorer, monkeypatch):
    """Two of the four prompts are "flat" (every completion scores 0): each batch holds two
    informative groups, so a step samples two batches to fill its four."""
    flat = ListIterator([{"prompt": p, "flat": i % 2 == 1}
                         for i, p in enumerate(("abc", "hij ab", "de", "ffff gh"))])
    seen = spy(monkeypatch)
    rl.train(config(steps=2, dynamic_sampling=True), str(tmp_path), CFG,
             models.init(CFG, jax.random.key(0)), tokenizer, scorer, flat,
             make_mesh(devices=jax.devices()[:1]))
    history = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert [h["dynamic_sampling/batches"] for h in history] == [2, 2]
    assert [h["adv/zero_std_frac"] for h in history] == [0.0, 0.0]
    for ro in seen["rollouts"]:  # the informative groups of both batches, in order
        assert [ex["flat"] for ex in ro.examples[::8]] == [False] * 4


def test_bf16_compute_samples_and_trains_with_the_drift_bf16_allows(tmp_path, tokenizer, scorer):
    _, history = run(tmp_path, tokenizer, scorer, steps=2, compute_dtype="bfloat16")
    drift = [h["rollout/logprob_drift"] for h in history]
    # The sampler and the update both run in bf16 (8 bits of mantissa, relative error ~0.4%);
    # their log-probs differ only by the cache vs the full forward pass (~2e-4 measured).
    assert all(0 < d < 0.01 for d in drift), drift


# --- Switches no experiment turns on, through the loop ---------------------------------------

# Completions stop at their first "a" (else run to max_new_tokens, truncated): ragged lengths.
RAGGED = dict(stop_strings=("a",), max_new_tokens=8)


def rows(minibatches, key):
    """One field of every row the updates saw, the microbatch axis flattened."""
    return np.concatenate([m[key].reshape(-1, *m[key].shape[2:]) for m in minibatches])


def test_microbatches_accumulate_to_the_update_of_one_batch(tmp_path, tokenizer, scorer,
                                                            monkeypatch):
    # token_mean divides by the tokens of the whole batch: ragged microbatches must not each
    # divide by their own.
    kwargs = dict(steps=1, aggregation="token_mean", kl_coef=0.1, **RAGGED)
    seen = spy(monkeypatch)
    _, one = run(tmp_path / "one", tokenizer, scorer, **kwargs)
    _, four = run(tmp_path / "four", tokenizer, scorer, microbatches=4, **kwargs)
    assert [m["tokens"].shape[:2] for m in seen["minibatches"]] == [(1, 32), (4, 8)]
    tokens = seen["minibatches"][1]["mask"].sum((1, 2))
    assert len(set(tokens.tolist())) > 1, "the microbatches should hold different token counts"
    assert_same_update(four[0], one[0])


def test_the_prompt_computed_once_per_group_gives_the_update_of_a_prompt_per_row(
        tmp_path, tokenizer, scorer, monkeypatch):
    """Microbatches of one row each get a prompt row per completion (rl.prompt_share 1); one
    microbatch of the whole rollout gets a prompt row per group of 8 (share 8): same update."""
    kwargs = dict(steps=1, kl_coef=0.1, **RAGGED)
    seen = spy(monkeypatch)
    _, per_group = run(tmp_path / "group", tokenizer, scorer, **kwargs)
    _, per_row = run(tmp_path / "row", tokenizer, scorer, microbatches=32, **kwargs)
    (group_mb, row_mb) = seen["minibatches"]
    assert group_mb["prompts"].shape[:2] == (1, 4) and group_mb["tokens"].shape[:2] == (1, 32)
    assert row_mb["prompts"].shape[:2] == (32, 1) and row_mb["tokens"].shape[:2] == (32, 1)
    assert_same_update(per_row[0], per_group[0])


def test_prompt_share_is_the_largest_divisor_of_the_group_each_microbatch_shard_holds():
    mesh = make_mesh(devices=jax.devices()[:2])
    for overrides, share in ((dict(), 8), (dict(microbatches=8), 2), (dict(microbatches=16), 1),
                             (dict(group_size=6, prompts_per_step=4, num_minibatches=3), 2),
                             (dict(prompts_per_step=32, group_size=16, microbatches=64), 4)):
        assert rl.prompt_share(config(**overrides), mesh) == share, overrides


@pytest.fixture(scope="module")
def overlong_run(tmp_path_factory, tokenizer, scorer):
    """One step with DAPO's overlong filter and soft overlong penalty (the last 4 of 8 tokens)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        seen = spy(monkeypatch)
        run(tmp_path_factory.mktemp("overlong"), tokenizer, scorer, steps=1,
            overlong_filter=True, overlong_cache_len=4, **RAGGED)
    (ro,) = seen["rollouts"]
    assert 0 < ro.truncated.sum() < len(ro.truncated), "some completions should be truncated"
    return ro, seen


def test_overlong_filter_leaves_truncated_completions_out_of_the_loss(overlong_run):
    ro, seen = overlong_run
    mask, loss_mask = rows(seen["minibatches"], "mask"), rows(seen["minibatches"], "loss_mask")
    # Each row keeps its whole mask or none of it; the tokens left are the finished rows'.
    assert all((lm == m).all() or not lm.any() for lm, m in zip(loss_mask, mask))
    assert loss_mask.sum() == ro.mask[~ro.truncated].sum() < ro.mask.sum()
    assert seen["updates"][0]["num_tokens"] == ro.mask[~ro.truncated].sum()


def test_soft_overlong_penalty_shapes_the_advantages_the_update_uses(overlong_run):
    ro, seen = overlong_run
    # DAPO eq. 13 with max_len 8 and cache 4: 0 up to 4 tokens, then (4 - L) / 4 down to -1.
    penalty = np.array([0.0 if n <= 4 else (4 - n) / 4 for n in ro.lengths])
    assert penalty.min() == -1.0 and len(set(penalty)) > 2
    shaped = (ro.rewards + penalty).reshape(-1, 8)
    expected = (shaped - shaped.mean(1, keepdims=True)) / (shaped.std(1, ddof=1, keepdims=True)
                                                           + 1e-6)
    np.testing.assert_allclose(np.sort(rows(seen["minibatches"], "advantages")),
                               np.sort(expected.ravel()), rtol=1e-5, atol=1e-6)


def test_async_rewards_train_each_step_on_the_previous_policys_samples(tmp_path, tokenizer,
                                                                      scorer, monkeypatch):
    seen = spy(monkeypatch)
    _, synced = run(tmp_path / "sync", tokenizer, scorer, steps=2)
    _, lagged = run(tmp_path / "async", tokenizer, scorer, steps=2, async_rewards=True)
    sync, lag = (seen["rollouts"][:2], seen["rollouts"][2:])
    # Step 2's samples: drawn by the initial policy with step 2's rng, not by the updated one.
    mesh = make_mesh(devices=jax.devices()[:1])
    collector = rollout.Collector(rollout.RolloutSettings.from_config(config()), CFG, tokenizer,
                                  scorer, mesh)
    initial = models.shard_params(CFG, models.init(CFG, jax.random.key(0)), mesh)
    by_initial = collector.sample(initial, examples().examples, jax.random.fold_in(
        jax.random.key(0), 1)).out.tokens
    np.testing.assert_array_equal(lag[0].tokens, sync[0].tokens)
    np.testing.assert_array_equal(lag[1].tokens, by_initial)
    assert not np.array_equal(sync[1].tokens, by_initial)
    assert [h["rollout/policy_lag"] for h in synced + lagged] == [0, 0, 1, 1]
