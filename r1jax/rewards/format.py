"""The format rewards: R1-Zero's `<think>...</think> <answer>...</answer>` with nothing else, and
R1's readable format, which puts a summary for the reader between the two blocks.

Completions are sampled after the R1-Zero template, which ends with "Assistant:", so a well-formed
completion starts with <think> (after optional whitespace). Each of the four tags must appear
exactly once, in order, both blocks must hold more than whitespace, and only whitespace may follow
</answer>. This is stricter than the usual `<think>.*?</think>\\s*<answer>.*?</answer>` regex on
purpose: TinyZero paid for repeated `</answer>` tags (PR #112) and tunix for text after the answer
(PR #2116). Implemented with `str.count`/`str.find`, so it is linear on any input.

`format` wants only whitespace between </think> and <answer>. `summary_format` wants more there:
R1's cold-start data writes `|special_token|<reasoning_process>|special_token|<summary>`, the
reasoning and then a summary of it for the reader, which in the toy world is

    <think> 3 + 7 = 10. 10 + 2 = 12. ... </think> 3 + 7 + 2 = 12. <answer> 12 </answer>

The summary holds no tag, since each tag is allowed once.
"""

import numpy as np

from r1jax.rewards.registry import register

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def is_well_formed(text: str, summary: bool = False) -> bool:
    """Whether `text` is in R1-Zero's format or, with `summary`, in R1's readable format (the
    same rules, and a summary that is more than whitespace between </think> and <answer>)."""
    text = text.strip()
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    think_end = text.find("</think>")
    answer_start = text.find("<answer>")
    if answer_start < think_end:
        return False
    if bool(text[think_end + len("</think>") : answer_start].strip()) != summary:
        return False
    think = text[len("<think>") : think_end]
    answer = text[answer_start + len("<answer>") : -len("</answer>")]
    return bool(think.strip()) and bool(answer.strip())


def format_reward(completions, summary: bool = False) -> np.ndarray:
    """1.0 for a completion well formed in R1-Zero's format (with `summary`: R1's readable one),
    else 0.0."""
    return np.array([float(is_well_formed(c, summary)) for c in completions], dtype=np.float64)


@register("format")
def format_term(completions, examples) -> np.ndarray:
    del examples  # the format does not depend on the example
    return format_reward(completions)


@register("summary_format")
def summary_format_term(completions, examples) -> np.ndarray:
    del examples  # the format does not depend on the example
    return format_reward(completions, summary=True)
