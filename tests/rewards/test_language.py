import math

import numpy as np
import pytest

from r1jax import rewards
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
