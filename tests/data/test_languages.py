"""The toy world's languages: Kalo's dictionary covers the toy world's English exactly, its words
are no English words, translation keeps everything but the words and reads back, and the language
reward tells the two languages apart."""

import pickle
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1jax import rewards
from r1jax.data import corpus, languages, tasks
from r1jax.data.languages import EN, KALO, KALO_DICTIONARY, is_kalo_word, to_english, translate
from r1jax.rewards.language import think_part

LONG = corpus.CorpusConfig(tasks=tasks.TASKS, long_fraction=1.0, slip_fraction=0.5)


def words(text):
    return re.findall(r"[A-Za-z]+", text)


def reasoning(doc):
    """A corpus document's reasoning (the template's preamble has a <think> of its own)."""
    return think_part(corpus.split_prompt(doc)[1])


@pytest.fixture(scope="module")
def english():
    """Every kind of English text the toy world writes: each level's questions, the phrases of
    short answers, slips, checks and failed tries, and the reasoning of long documents."""
    questions = [e["question"] for task in tasks.TASKS
                 for e in tasks.make_split(task, "train", 40, seed=0)]
    phrases = [corpus._SHORT_THINK, *corpus._SLIPS, *corpus._CHECKS,
               *(fail.format(value=15, target=22) for fail in corpus._FAILS)]
    thinks = [reasoning(doc) for doc in corpus.corpus_documents(0, 600, LONG)]
    return questions + phrases + thinks


def test_the_dictionary_is_exactly_the_toy_worlds_english(english):
    assert {w.lower() for text in english for w in words(text)} == set(KALO_DICTIONARY)
    assert 40 <= len(KALO_DICTIONARY) <= 60


def test_kalo_words_are_short_letters_distinct_and_no_english_word_of_the_toy_world():
    kalo = list(KALO_DICTIONARY.values())
    assert all(re.fullmatch(r"[a-z]{2,8}", w) for w in kalo)
    assert len(set(kalo)) == len(kalo)  # one English word each: Kalo reads back
    assert not set(kalo) & set(KALO_DICTIONARY)
    assert languages.KALO_WORDS == {w for k in kalo for w in (k, k.capitalize())}


def test_translation_round_trips_and_leaves_no_english_word(english):
    for text in english:
        kalo = translate(text, KALO)
        assert to_english(kalo) == text
        assert all(map(is_kalo_word, words(kalo))), kalo
        assert re.sub(r"[A-Za-z]+", "w", kalo) == re.sub(r"[A-Za-z]+", "w", text)
        assert translate(text, EN) == text
    assert translate("Add 3 + 7 + 2", KALO) == "Pelu 3 + 7 + 2"
    assert translate("The result is 12. Correct.", KALO) == "Ke fenako ezu 12. Zirok."


@pytest.mark.parametrize("text, word", [("Add the cat", "cat"), ("ADD 3", "ADD"),
                                        ("Add 3 + 4. Bonjour", "Bonjour")])
def test_a_word_outside_the_dictionary_is_an_error_naming_it(text, word):
    with pytest.raises(ValueError, match=f"no translation of the word '{word}'"):
        translate(text, KALO)


def test_an_unknown_language_is_an_error():
    with pytest.raises(ValueError, match=r"languages \('fr',\) must be distinct codes"):
        translate("Add 3", "fr")


def test_is_kalo_word_survives_pickling_for_the_reward_pool():
    assert pickle.loads(pickle.dumps(is_kalo_word))("Ke")
    assert not pickle.loads(pickle.dumps(is_kalo_word))("The")


_DICTIONARY_WORDS = sorted({w for k in KALO_DICTIONARY for w in (k, k.capitalize())})
_SEPARATORS = st.text(alphabet="0123456789 +-*/=.,:;!?()[]", min_size=1, max_size=4)


@given(st.lists(st.tuples(st.sampled_from(_DICTIONARY_WORDS), _SEPARATORS), max_size=12),
       _SEPARATORS)
def test_any_text_of_dictionary_words_digits_and_punctuation_round_trips(pairs, head):
    text = head + "".join(word + separator for word, separator in pairs)
    kalo = translate(text, KALO)
    assert to_english(kalo) == text
    assert all(map(is_kalo_word, words(kalo)))
    assert re.sub(r"[A-Za-z]+", "", kalo) == re.sub(r"[A-Za-z]+", "", text)


def test_the_language_reward_tells_kalo_from_english():
    thinks = [reasoning(doc) for doc in corpus.corpus_documents(1, 200, LONG)]
    kalo = [translate(t, KALO) for t in thinks]
    np.testing.assert_array_equal(rewards.language_consistency(kalo, KALO), 1.0)
    assert rewards.language_consistency(kalo, EN).max() < 0.05
    np.testing.assert_array_equal(rewards.language_consistency(thinks, EN), 1.0)
    assert rewards.language_consistency(thinks, KALO).max() < 0.05
    example = {"lang": KALO}
    assert rewards.get("language")([f"<think>{kalo[0]}</think>"], [example])[0] == 1.0
