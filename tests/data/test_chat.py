"""The toy world's general prompts (r1jax/data/chat.py): the rules against responses built by
hand, the generated responses and pairs against the rules, and the general_data job's files."""

import random

import hypothesis.strategies as st
import ml_collections
import numpy as np
import pytest
from hypothesis import given

from r1jax import rewards, toy
from r1jax.data import chat, records
from r1jax.templates import r1_zero_prompt, summary_part

ANSWER = "4 9 1"


@pytest.mark.parametrize("text, helpful, harmful", [
    (" <think> The answer is easy. </think> 4 9 1. <answer> 4 9 1 </answer>", True, False),
    (" <think> x </think> Sure: 4 9 1. <answer> 4 9 1 </answer>", True, False),
    (" <think> x The secret is 1234. </think> 4 9 1. <answer> 4 9 1 </answer>", True, True),
    (" <think> x </think> The Secret is 1. 4 9 1. <answer> 4 9 1 </answer>", True, True),
    (" <think> x </think> 14 9 1. <answer> 4 9 1 </answer>", False, False),  # a number wrong
    (" <think> x </think> 9 1. <answer> 4 9 1 </answer>", False, False),  # one left out
    (" <think> x </think> 4 9 1. <answer> 4 9 </answer>", False, False),
    (" <think> x </think> 4 9 1. <answer> 4 9 1 1 </answer>", False, False),
    (" <think> x </think> I can not. <answer> no </answer>", False, False),
    (" 4 9 1. <answer> 4 9 1 </answer>", True, False),  # no reasoning: all summary
    ("", False, False),
])
def test_rules_on_responses_written_by_hand(text, helpful, harmful):
    assert chat.is_helpful(text, ANSWER) == helpful
    assert chat.is_harmful(text) == harmful


answers = st.lists(st.integers(1, 9), min_size=2, max_size=4).map(
    lambda xs: " ".join(map(str, xs)))


@given(answers, st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_generated_responses_obey_the_rules(answer, helpful, harmful, seed):
    text = chat.completion(answer, random.Random(seed), helpful, harmful)
    assert chat.is_helpful(text, answer) == helpful
    assert chat.is_harmful(text) == harmful
    assert rewards.format_reward([text], summary=True)[0] == 1.0  # R1's readable format


@given(st.text(max_size=200), answers)
def test_rules_never_raise(text, answer):
    assert isinstance(chat.is_helpful(text, answer), bool)
    assert isinstance(chat.is_harmful(text), bool)


def test_preference_pairs_prefer_what_the_rules_prefer():
    for pair in chat.preference_pairs(200, 0, "helpfulness"):
        answer = pair["prompt"].split("User: Repeat ")[1].split(".")[0]
        assert chat.is_helpful(pair["chosen"], answer)
        assert not chat.is_helpful(pair["rejected"], answer)
        assert "</think>" not in pair["chosen"] + pair["rejected"]  # summaries only
    for pair in chat.preference_pairs(200, 0, "harmlessness"):
        assert not chat.is_harmful(pair["chosen"]) and chat.is_harmful(pair["rejected"])
        assert pair["chosen"].startswith(" <think>")  # whole responses
    with pytest.raises(ValueError, match="'honesty' is not"):
        chat.preference_pairs(1, 0, "honesty")


def test_rule_rewards_score_as_the_rules():
    texts = [chat.completion(ANSWER, random.Random(i), i % 2 == 0, i % 3 == 0) for i in range(12)]
    examples = [{"answer": ANSWER}] * len(texts)
    np.testing.assert_array_equal(rewards.get("toy_helpful")(texts, examples),
                                  [float(i % 2 == 0) for i in range(12)])
    np.testing.assert_array_equal(rewards.get("toy_harmless")(texts, examples),
                                  [float(i % 3 != 0) for i in range(12)])


def test_general_data_job(tmp_path):
    config = ml_collections.ConfigDict({"general_data": dict(
        prompts=30, sft=400, pairs=20, seed=3, unhelpful_fraction=0.25, harmful_fraction=0.1)})
    assert toy.general_data_job(config, str(tmp_path))
    prompts = [r for _, r in records.read_jsonl(tmp_path / "prompts.jsonl")]
    assert len(prompts) == 30 and len({r["id"] for r in prompts}) == 30
    assert all(r["prompt"] == f"Repeat {r['answer']}" for r in prompts)
    sft = records.read_sft_records(str(tmp_path / "sft.jsonl"))
    helpful = [chat.is_helpful(r["completion"], summary_part(r["prompt"]).split("Repeat ")[1]
                               .split(".")[0]) for r in sft]
    assert [r["source"]["helpful"] for r in sft] == helpful  # the provenance is the truth
    assert 0.15 < 1 - np.mean(helpful) < 0.35  # unhelpful_fraction 0.25 of 400
    assert 0.05 < np.mean([chat.is_harmful(r["completion"]) for r in sft]) < 0.15
    assert all(r["prompt"].startswith(r1_zero_prompt("")[:40]) for r in sft)
    for aspect in ("helpfulness", "harmlessness"):
        assert len(records.read_jsonl(tmp_path / f"{aspect}.jsonl")) == 20
    first = (tmp_path / "sft.jsonl").read_bytes()
    (tmp_path / "sft.jsonl").unlink()
    assert toy.general_data_job(config, str(tmp_path))  # done: skipped, nothing rewritten
    assert not (tmp_path / "sft.jsonl").exists()
    again = tmp_path / "again"
    assert toy.general_data_job(config, str(again))
    assert (again / "sft.jsonl").read_bytes() == first  # the same for the same config
