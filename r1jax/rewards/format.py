"""The R1-Zero format reward: `<think>...</think>` then `<answer>...</answer>`, nothing else.

Completions are sampled after the R1-Zero template, which ends with "Assistant:", so a well-formed
completion starts with <think> (after optional whitespace). Each of the four tags must appear
exactly once, in order, both blocks must hold more than whitespace, and only whitespace may follow
</answer>. This is stricter than the usual `<think>.*?</think>\\s*<answer>.*?</answer>` regex on
purpose: TinyZero paid for repeated `</answer>` tags (PR #112) and tunix for text after the answer
(PR #2116). Implemented with `str.count`/`str.find`, so it is linear on any input.
"""

import numpy as np

from r1jax.rewards.registry import register

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def is_well_formed(text: str) -> bool:
    text = text.strip()
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    think_end = text.find("</think>")
    answer_start = text.find("<answer>")
    if answer_start < think_end or text[think_end + len("</think>") : answer_start].strip():
        return False
    think = text[len("<think>") : think_end]
    answer = text[answer_start + len("<answer>") : -len("</answer>")]
    return bool(think.strip()) and bool(answer.strip())


def format_reward(completions) -> np.ndarray:
    """1.0 for a well-formed completion, else 0.0."""
    return np.array([float(is_well_formed(c)) for c in completions], dtype=np.float64)


@register("format")
def format_term(completions, examples) -> np.ndarray:
    del examples  # the format does not depend on the example
    return format_reward(completions)
