"""RL for all scenarios (r1jax/scenarios.py): general prompts mixed in from a step on, which
rewards score which prompts, the reward-model terms added to the pool's, and the config errors."""

import copy
import os

import ml_collections
import numpy as np
import pytest

from r1jax import cli, rewards, rollout, scenarios
from r1jax.data import pipeline, prompts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REASONING = [{"id": f"r{i}", "prompt": f"reasoning {i}", "answer": str(i)} for i in range(13)]
GENERAL = [{"id": f"g{i}", "prompt": f"general {i}", "reward": ("helpfulness", "toy_harmless")}
           for i in range(5)]


def mixed(from_batch=2, count=2):
    return scenarios.WithGeneral(iter(pipeline.prompt_dataset(REASONING, 6, seed=0)),
                                 iter(pipeline.prompt_dataset(GENERAL, count, seed=0)),
                                 from_batch, count)


def test_general_prompts_replace_the_batch_tail_from_the_given_batch_on():
    plain = iter(pipeline.prompt_dataset(REASONING, 6, seed=0))
    general = iter(pipeline.prompt_dataset(GENERAL, 2, seed=0))
    it = mixed()
    for i in range(5):
        batch, expected = next(it), next(plain)
        if i < 2:
            assert batch == expected
        else:
            assert batch == expected[:4] + next(general)


def test_state_resumes_the_same_batches():
    it = mixed()
    for _ in range(3):
        next(it)
    state = copy.deepcopy(it.get_state())
    expected = [next(it) for _ in range(3)]
    resumed = mixed()
    resumed.set_state(state)
    assert [next(resumed) for _ in range(3)] == expected


def config_with_general(**general):
    config = cli.load_experiment(os.path.join(REPO, "experiments", "aha_tiny.py"), "smoke")
    config.rewards = ml_collections.ConfigDict(
        {"arithmetic": 1.0, "summary_format": 1.0, "helpfulness": 2.0, "toy_harmless": 0.0})
    config.reward_models = ml_collections.ConfigDict(
        {"helpfulness": {"path": "unused", "on": "summary"}})
    config.general = ml_collections.ConfigDict(dict(
        source={"path": "g.jsonl", "format": "general", "reward": ("helpfulness", "toy_harmless")},
        from_step=5, prompts_per_step=2))
    config.general.update(general)
    return config


def test_each_reward_scores_its_own_prompts():
    config = config_with_general()
    scoped = scenarios.scoped_rewards(config)
    assert scoped == {"helpfulness", "toy_harmless", "arithmetic"}
    reasoning = scenarios.tag_reasoning(config, [{"id": "r", "answer": "3"}])[0]
    general = GENERAL[0]
    for name, on_reasoning, on_general in [("arithmetic", True, False),
                                           ("summary_format", True, True),
                                           ("helpfulness", False, True),
                                           ("toy_harmless", False, True)]:
        assert rewards.registry.applies(name, reasoning, scoped) == on_reasoning, name
        assert rewards.registry.applies(name, general, scoped) == on_general, name
    assert scenarios.rule_weights(config, scenarios.model_specs(config)) == {
        "arithmetic": 1.0, "summary_format": 1.0, "toy_harmless": 0.0}
    # Without general prompts nothing is tagged (the R1-Zero runs' examples are as they were).
    del config.general
    assert scenarios.tag_reasoning(config, [{"id": "r"}]) == [{"id": "r"}]


def test_general_source_loads_with_its_rewards(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"prompt": "Repeat 1 2", "answer": "1 2"}\n'
                                      '{"prompt": "Say hi"}\n')
    config = config_with_general(source={"path": str(tmp_path / "g.jsonl"), "format": "general",
                                         "reward": ("helpfulness", "toy_harmless"),
                                         "lang": "en"})
    examples = prompts.general_examples(config)
    assert [ex["prompt"] for ex in examples] == [
        prompts.templates.r1_zero_prompt(q) for q in ("Repeat 1 2", "Say hi")]
    assert examples[0]["answer"] == "1 2" and "answer" not in examples[1]
    assert examples[0]["reward"] == ("helpfulness", "toy_harmless")
    assert examples[0]["lang"] == "en"
    config.general.source.reward = ("helpfulness", "kindness")
    with pytest.raises(ValueError, match="reward 'kindness' is not in config.rewards"):
        prompts.general_examples(config)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.rewards.__delattr__("helpfulness"), "reward model 'helpfulness' .* has no weight"),
    (lambda c: c.reward_models.helpfulness.update(on="reasoning"), "must be .*'on': one of"),
])
def test_model_specs_errors(change, message):
    config = config_with_general()
    with config.unlocked():
        change(config)
    with pytest.raises(ValueError, match=message):
        scenarios.model_specs(config)


@pytest.mark.parametrize("general, message", [
    (dict(prompts_per_step=0), "must be between 1 and"),
    (dict(prompts_per_step=4), "must be between 1 and"),  # aha_tiny smoke: 4 prompts a step
    (dict(from_step=10), "must be a step of the run"),
])
def test_general_batch_errors(general, message):
    with pytest.raises(ValueError, match=message):
        scenarios.general_batch_rows(config_with_general(**general), None)


def test_general_rows_have_no_verdict_and_stay_out_of_accuracy():
    texts = ["<think> a </think> <answer> 3 </answer>"] * 4
    examples = [{"answer": "3", "reward": "arithmetic"}, {"answer": "4", "reward": "arithmetic"},
                GENERAL[0], GENERAL[0]]
    ro = rollout.Rollout(examples, *[np.zeros((4, 2))] * 5, np.array([5, 7, 1, 1]),
                         np.zeros(4, bool), texts, np.array([1.0, 0.0, 5.0, 5.0]),
                         {"arithmetic": np.array([1.0, 0.0, np.nan, np.nan])}, {})
    np.testing.assert_array_equal(rollout.judged(ro), [True, True, False, False])
    np.testing.assert_array_equal(rollout.correct(ro, "arithmetic"), [True, False, False, False])
    stats = rollout.rollout_metrics(ro, 2, "arithmetic")
    assert stats["accuracy"] == 0.5 and stats["length/mean"] == 6.0  # reasoning rows only


class FakeModel:
    """A reward model's interface (name, scores) with a score per row we choose."""

    name = "helpfulness"

    def scores(self, texts, examples, rows):
        return np.where(rows, [float(len(t)) for t in texts], np.nan), 0


class FakePool:
    def score(self, completions, examples):
        n = len(completions)
        return np.ones(n), {"summary_format": np.ones(n)}, {}


def test_model_terms_add_where_they_apply():
    config = config_with_general()
    scorer = scenarios.ModelScorer(FakePool(), [FakeModel()], dict(config.rewards),
                                   scenarios.scoped_rewards(config))
    examples = [{"reward": "arithmetic"}, GENERAL[0], GENERAL[1]]
    total, terms, stats = scorer.score(["ab", "abc", "abcd"], examples)
    np.testing.assert_array_equal(terms["helpfulness"], [np.nan, 3.0, 4.0])
    np.testing.assert_array_equal(total, [1.0, 1.0 + 2.0 * 3, 1.0 + 2.0 * 4])  # weight 2
    assert stats["reward/helpfulness_truncated"] == 0 and stats["reward/helpfulness_s"] >= 0
    # A batch without general prompts runs no pass: the term is NaN throughout.
    total, terms, _ = scorer.score(["ab"], [{"reward": "arithmetic"}])
    assert np.isnan(terms["helpfulness"]).all() and total.tolist() == [1.0]
