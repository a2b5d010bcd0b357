"""Rejection sampling's filters (r1jax.rejection): each filter on the case it exists for, the
statistics against independent formulas, and the accounting of every sample."""

import hypothesis.strategies as st
from hypothesis import given, settings

from r1jax import rejection, rewards

# A language of the words "la" and "li", scored by word (no lingua models to load).
rewards.register_language("la-li", frozenset({"la", "li"}).__contains__)
WORDS = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


def sample(completion, correct=True, prompt="p", **example):
    return {"prompt": prompt, "completion": completion, "correct": correct, "example": example}


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
    ]
    kept, dropped = rejection.select(samples, s)
    assert kept == [samples[0], samples[6]]
    assert dropped == {"incorrect": 1, "mixed_language": 1, "repetition": 1,
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
