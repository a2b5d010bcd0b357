import math
import re

import numpy as np
import pytest

from r1jax import rewards
from r1jax.rewards import language
from r1jax.rewards.language import think_part

EN = (
    "First, let me compute the sum of the two numbers. Wait, I think I made a mistake here, so "
    "let's recheck the calculation step by step. "
)
ES = (
    "Primero, voy a calcular la suma de los dos números. Espera, creo que cometí un error aquí, "
    "así que revisemos el cálculo paso a paso. "
)
ZH = (
    "首先，我来计算这两个数的和。等等，我想我在这里犯了一个错误，所以让我们一步一步地重新检查计算。"
)


def test_single_language_texts():
    np.testing.assert_allclose(rewards.language_consistency([EN * 3, ES * 3], "en"), [1.0, 0.0])
    np.testing.assert_allclose(rewards.language_consistency([EN * 3, ES * 3], "es"), [0.0, 1.0])
    np.testing.assert_allclose(rewards.language_consistency([ZH, EN], "zh"), [1.0, 0.0])


def test_mixed_text_scores_in_between():
    en, es = (
        rewards.language_consistency([EN + ES], "en")[0],
        rewards.language_consistency([EN + ES], "es")[0],
    )
    assert 0.35 < en < 0.65 and 0.35 < es < 0.65
    assert en + es == pytest.approx(1.0)
    inline = "我们需要 compute the sum of these two numbers 然后 检查。"  # switching mid-sentence
    assert 0.2 < rewards.language_consistency([inline], "zh")[0] < 0.8


def test_math_and_latex_are_not_words():
    text = EN + r"So $\frac{3}{4} \cdot 12 = 9$ and \sqrt{16} = 4, 2 + 2 = 4. "
    assert rewards.language_consistency([text], "en")[0] == 1.0
    assert rewards.language_consistency(["$1 + 2 = 3$", ""], "en").tolist() == [0.0, 0.0]


def test_custom_language():
    rewards.register_language("x-toy-test", frozenset({"blorp", "zanti"}).__contains__)
    np.testing.assert_allclose(
        rewards.language_consistency(
            ["blorp zanti blorp the", "blorp, 42 zanti!", "the cat"], "x-toy-test"
        ),
        [0.75, 1.0, 0.0],
    )


def test_unknown_language():
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        rewards.language_consistency(["hello"], "xx")
    assert math.isnan(rewards.get("language")(["<think>hello</think>"], [{"lang": "xx"}])[0])
    assert math.isnan(rewards.get("language")(["<think>hello</think>"], [{}])[0])


def test_reward_scores_only_the_reasoning():
    completion = f"<think>{EN}</think> <answer>{ES}</answer>"
    assert think_part(completion) == EN
    assert rewards.get("language")([completion], [{"lang": "en"}])[0] == 1.0
    assert think_part(f"<think>{EN}<answer>x</answer>") == EN
    assert think_part(f"{ES}</think>") == ES


class _Spy:
    """Stands in for lingua's detector: records the spans it is asked about."""

    def __init__(self):
        self.spans = []

    def detect_language_of(self, span):
        self.spans.append(span)


def test_lingua_sees_a_bounded_text(monkeypatch):
    spy = _Spy()
    monkeypatch.setattr(language, "_detector", lambda target: spy)
    for text in [EN * 2500, "z" * 300_000, EN + "q" * 300_000 + ES]:  # each ~300k characters
        spy.spans.clear()
        rewards.get("language")([f"<think>{text}</think>"], [{"lang": "en"}])
        assert sum(map(len, spy.spans)) <= language.MAX_CHARS
        longest_word = max((len(w) for s in spy.spans for w in re.findall(r"[^\W\d_]+", s)),
                           default=0)
        assert longest_word <= language.MAX_WORD_LETTERS


def test_degenerate_texts():
    """A run of one letter, or one letter over and over, is in no language; repeated words are
    in theirs."""
    for lang, text in [("en", "z" * 100), ("es", "a" * 100), ("en", "t " * 100),
                       ("en", "Z" * 300_000), ("en", "x" * 65), ("zh", "我" * 100)]:
        assert rewards.language_consistency([text], lang)[0] == 0.0, (lang, text[:10])
    assert rewards.language_consistency(["the " * 100], "en")[0] == 1.0
    assert rewards.language_consistency(["等等，我想一下。"], "zh")[0] == 1.0  # wait, let me think
    words = len(language._WORD.findall(EN))
    np.testing.assert_allclose(  # a long run is one word in no language
        rewards.language_consistency([EN + "z" * 1000], "en"), [words / (words + 1)])
