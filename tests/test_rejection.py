"""Rejection sampling (r1jax.rejection): each filter on the case it exists for, the statistics
against independent formulas, and the accounting of every sample; the job end to end on a tiny
random checkpoint (what it keeps against `select` over its raw samples, provenance, the report,
skipping a finished stage, an exact resume), and its errors on bad input."""

import json
import os
import sys

import hypothesis.strategies as st
import jax
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings

from r1jax import models, rejection, rewards, tokenizers, toy
from r1jax.cli import load_experiment
from r1jax.data import CorpusConfig, corpus_documents, records

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.append(TESTS)  # the reward pool's workers import rejection_rewards from here
import rejection_rewards  # noqa: E402

# A language of the words "la" and "li", scored by word (no lingua models to load).
rewards.register_language("la-li", frozenset({"la", "li"}).__contains__)
WORDS = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


def sample(completion, correct=True, prompt="p", truncated=False, **example):
    return {"prompt": prompt, "completion": completion, "correct": correct,
            "truncated": truncated, "example": example}


@given(st.lists(WORDS, min_size=8, max_size=40, unique=True))
def test_repeated_ngrams_of_distinct_words_and_of_a_text_said_twice(words):
    n = 4
    assert rejection.repeated_ngrams(" ".join(words), n) == 0
    # Said twice: the n-grams lying wholly in the second copy repeat, the others do not.
    twice = rejection.repeated_ngrams(" ".join(words + words), n)
    assert twice == (len(words) - n + 1) / (2 * len(words) - n + 1)


@given(st.lists(st.lists(WORDS, max_size=12), min_size=1, max_size=6),
       st.sampled_from(["\n\n", "\n \n", "\n\t\n\n"]))
def test_longest_paragraph_counts_the_words_between_blank_lines(paragraphs, gap):
    text = gap.join("\n".join(p) for p in paragraphs)  # single line breaks stay in a paragraph
    assert rejection.longest_paragraph(text) == max(len(p) for p in paragraphs)


def test_each_filter_drops_what_it_exists_for_and_is_counted():
    s = rejection.FilterSettings(ngram=3, max_repeated_ngrams=0.2, max_paragraph_words=20)
    good = "<think>la li la</think><answer>4</answer>"
    samples = [
        sample(good, lang="la-li"),
        sample(good, correct=False),
        sample("<think>la li la other words here</think><answer>4</answer>", lang="la-li"),
        sample("<think>" + "wait let me check " * 5 + "</think><answer>4</answer>"),
        sample("<think>" + " ".join(f"step{i}" for i in range(21)) + "</think><answer>4</answer>"),
        sample("<think>ok</think><answer>```print(4)```</answer>", reward="accuracy"),
        sample("<think>ok</think><answer>```print(4)```</answer>", reward="code"),
        sample("  <think>la li  la</think><answer>4</answer>", prompt=" P", lang="la-li"),
        sample("<think>la li la", truncated=True, lang="la-li"),
    ]
    kept, dropped = rejection.select(samples, s)
    assert kept == [samples[0], samples[6]]
    assert dropped == {"incorrect": 1, "truncated": 1, "mixed_language": 1, "repetition": 1,
                       "long_paragraph": 1, "code_block": 1, "duplicate": 1}


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["la li", "la x", "a b a b a b a b", "```x```", ""]),
                          st.booleans(), st.sampled_from(["p", "q"]),
                          st.sampled_from([{}, {"lang": "la-li"}, {"reward": "code"}])),
                max_size=30))
def test_every_sample_is_kept_or_dropped_by_exactly_one_filter(rows):
    samples = [sample(text, correct, prompt, **example) for text, correct, prompt, example in rows]
    kept, dropped = rejection.select(samples, rejection.FilterSettings(ngram=2))
    assert len(kept) + sum(dropped.values()) == len(samples)
    assert list(dropped) == list(rejection.FILTERS)
    assert len({(s["prompt"], s["completion"]) for s in kept}) == len(kept)  # no duplicates
    assert all(rejection.rejection(s, rejection.FilterSettings(ngram=2)) is None for s in kept)


# --- The job --------------------------------------------------------------------------------------

AHA_TINY = os.path.join(os.path.dirname(TESTS), "experiments", "aha_tiny.py")
rewards.register("test_even_length", rejection_rewards.even_length)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random model as an HF checkpoint with a toy-world SentencePiece tokenizer, as the RL
    stage's export leaves it."""
    directory = tmp_path_factory.mktemp("checkpoint")
    cfg = models.get_config("tiny", vocab_size=512)
    models.save_hf(cfg, models.init(cfg, jax.random.key(0)), str(directory))
    tokenizers.train_sentencepiece(corpus_documents(0, 200, CorpusConfig(tasks=("sums",))),
                                   directory / "tokenizer", 400)
    return directory


def job_config(checkpoint, **rejection_settings):
    """aha_tiny's smoke world sampled from ``checkpoint``, 2 samples of up to 16 tokens per
    prompt that stop at an "e", judged by `rejection_rewards.even_length` (a random model is
    almost never right)."""
    config = load_experiment(AHA_TINY, "smoke")
    config.job = "rejection"
    config.model.update(name="", hf_path=str(checkpoint))  # "": no check against a named model
    config.rewards = ml_collections.ConfigDict({"test_even_length": 1.0, "format": 1.0})
    config.rl.correctness_reward = "test_even_length"
    config.rl.stop_strings = ("e",)  # a random model's samples end at varied lengths
    config.rejection = rejection.default_config()
    config.rejection.update(samples_per_prompt=2, prompts=20, prompts_per_batch=8,
                            max_new_tokens=16, **rejection_settings)
    return config


def read(path):
    return [record for _, record in records.read_jsonl(path)]


def test_the_job_keeps_the_samples_that_pass_the_filters_and_resumes_exactly(
        checkpoint, tmp_path, capsys):
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"prompt": "Hi", "completion": "Hello.", "topic": "chat"})
                       + "\n\n" + json.dumps({"prompt": "Q", "completion": "A",
                                              "source": {"stage": "mine"}}) + "\n")
    # Paragraphs of at most 3 words: the long-paragraph filter drops some correct samples too.
    config = job_config(checkpoint, general_data=(str(general),), max_paragraph_words=3)
    workdir = tmp_path / "run"
    workdir.mkdir()
    assert rejection.job(config, str(workdir))
    chunks = sorted(os.listdir(workdir / "samples"))
    assert chunks == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]  # 20 prompts in chunks of 8
    samples = [s for chunk in chunks for s in read(workdir / "samples" / chunk)]

    # Every sample of the first 20 prompts, in order, once per sample index (not the padding of
    # the short last chunk), judged by the RL rewards.
    examples = toy.train_examples(config.data)[:20]
    assert [(s["example"]["id"], s["sample"]) for s in samples] == [
        (ex["id"], j) for ex in examples for j in range(2)]
    assert [s["prompt"] for s in samples] == [ex["prompt"] for ex in examples for _ in range(2)]
    completions = [s["completion"] for s in samples]
    assert [s["correct"] for s in samples] == [len(c) % 2 == 0 for c in completions]
    np.testing.assert_allclose([s["reward"] for s in samples],
                               [len(c) % 2 == 0 for c in completions]
                               + rewards.format_reward(completions))
    assert all(0 < s["length"] <= 16 and (s["length"] == 16 or not s["truncated"])
               for s in samples)

    # data.jsonl: the samples `select` keeps, each with its provenance, then the general records.
    kept, dropped = rejection.select(samples, rejection.FilterSettings(max_paragraph_words=3))
    data = read(workdir / "data.jsonl")
    assert data[:len(kept)] == [
        {"prompt": s["prompt"], "completion": s["completion"],
         "source": {"stage": "rejection", "checkpoint": str(checkpoint),
                    "example": s["example"]["id"], "sample": s["sample"],
                    "reward": s["reward"]}} for s in kept]
    assert data[len(kept):] == [
        {"prompt": "Hi", "completion": "Hello.", "topic": "chat",
         "source": {"stage": "general", "file": str(general), "line": 1}},
        {"prompt": "Q", "completion": "A", "source": {"stage": "mine"}}]

    report = json.loads((workdir / "report.json").read_text())
    assert report["dropped"] == dropped and kept
    assert min(dropped["incorrect"], dropped["truncated"], dropped["long_paragraph"]) > 0
    assert report["kept"] + sum(report["dropped"].values()) == report["samples"] == 40
    assert (report["prompts"], report["general"], report["total"]) == (20, 2, len(data))
    assert report["accuracy"] == np.mean([s["correct"] for s in samples])
    assert report["mean_length"] == {"all": np.mean([s["length"] for s in samples]),
                                     "kept": np.mean([s["length"] for s in kept])}
    assert report["settings"]["samples_per_prompt"] == 2
    assert "| kept reasoning samples |" in capsys.readouterr().out

    first = {path: path.read_bytes() for path in workdir.rglob("*.json*")}
    assert rejection.job(config, str(workdir))  # done: skipped
    assert "exists, so this stage is done (skipped)" in capsys.readouterr().out

    # Killed during chunk 2 or before data.jsonl: a rerun samples chunk 2 alone, exactly again.
    (workdir / "data.jsonl").unlink()
    (workdir / "samples" / "00001.jsonl").unlink()
    assert rejection.job(config, str(workdir))
    out = capsys.readouterr().out
    assert "(2 done before)" in out and "chunk 2 of 3 sampled" in out and "chunk 1 " not in out
    assert {path: path.read_bytes() for path in workdir.rglob("*.json*")} == first


def test_a_missing_checkpoint_is_an_error_naming_it_before_anything_loads(tmp_path):
    config = job_config(tmp_path / "no_such_run" / "hf")
    with pytest.raises(FileNotFoundError, match=r"no_such_run/hf does not exist.*RL stage"):
        rejection.job(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_general_record_without_a_completion_is_an_error_naming_file_and_line(
        checkpoint, tmp_path):
    general = tmp_path / "general.jsonl"
    general.write_text('{"prompt": "Hi", "completion": "Hello."}\n{"prompt": "Q"}\n')
    config = job_config(checkpoint, general_data=(str(general),))
    with pytest.raises(ValueError, match=rf"{general}, line 2: field 'completion'"):
        rejection.job(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
