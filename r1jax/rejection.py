"""Rejection sampling into an SFT set (R1 §2.3.3): which sampled completions an SFT set keeps.

R1 samples several completions per prompt from its reasoning-RL checkpoint, keeps the correct
ones, and filters out chains of thought "with mixed languages, long paragraphs, and code blocks"
(and, for the cold start, repetition), about 600k reasoning samples in all. Here each sample is a
dict with its "prompt", "completion", "correct" (the verdict of the reward the RL stage trained
with) and "example" (its data row); `select` applies the filters in `FILTERS` order and counts,
for the report, how many samples each one dropped (a sample is counted under the first filter
that drops it):

    incorrect       the verifier said no
    mixed_language  less than ``min_language_share`` of the reasoning's words are in the
                    example's language (only for examples that name one: "lang")
    repetition      more than ``max_repeated_ngrams`` of the reasoning's word n-grams repeat an
                    earlier one (a model stuck in a loop)
    long_paragraph  a paragraph (text between blank lines) longer than ``max_paragraph_words``
    code_block      a fenced code block (```) in a completion whose task is not code
    duplicate       the same prompt and completion (whitespace and case aside) as a kept sample

The thresholds are r1jax's: the paper names the filters, not their settings.
"""

import dataclasses
import re
from collections import Counter

from r1jax.rewards.language import language_consistency, think_part

FILTERS = ("incorrect", "mixed_language", "repetition", "long_paragraph", "code_block",
           "duplicate")


@dataclasses.dataclass(frozen=True)
class FilterSettings:
    min_language_share: float = 0.95
    ngram: int = 8  # words per n-gram of the repetition filter
    max_repeated_ngrams: float = 0.2
    max_paragraph_words: int = 300
    code_rewards: tuple[str, ...] = ("code",)  # examples judged by these may hold code blocks

    def __post_init__(self):
        if not (0 <= self.min_language_share <= 1 and 0 <= self.max_repeated_ngrams <= 1
                and self.ngram >= 1 and self.max_paragraph_words >= 1):
            raise ValueError(f"rejection filter settings out of range: {self}")


def repeated_ngrams(text: str, n: int) -> float:
    """The share of the text's word n-grams that repeat an earlier one (0 with fewer than n
    words)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def longest_paragraph(text: str) -> int:
    """Words in the text's longest paragraph (paragraphs are separated by blank lines)."""
    return max((len(p.split()) for p in re.split(r"\n\s*\n", text)), default=0)


def has_code_block(text: str) -> bool:
    return "```" in text


def _key(sample: dict) -> tuple[str, str]:
    return tuple(" ".join(sample[k].split()).casefold() for k in ("prompt", "completion"))


def rejection(sample: dict, settings: FilterSettings) -> str | None:
    """The first filter of `FILTERS` (but duplicate, which needs the other samples) that drops
    ``sample``, or None when it passes them all."""
    text, example = sample["completion"], sample["example"]
    reasoning = think_part(text)
    if not sample["correct"]:
        return "incorrect"
    if example.get("lang") and (language_consistency([reasoning], example["lang"])[0]
                                < settings.min_language_share):
        return "mixed_language"
    if repeated_ngrams(reasoning, settings.ngram) > settings.max_repeated_ngrams:
        return "repetition"
    if longest_paragraph(text) > settings.max_paragraph_words:
        return "long_paragraph"
    if has_code_block(text) and example.get("reward") not in settings.code_rewards:
        return "code_block"
    return None


def select(samples, settings: FilterSettings = FilterSettings()) -> tuple[list[dict], dict]:
    """(the samples that pass every filter, in order; {filter: samples it dropped} for every
    filter of `FILTERS`)."""
    kept, seen, dropped = [], set(), Counter()
    for sample in samples:
        reason = rejection(sample, settings)
        if reason is None and _key(sample) in seen:
            reason = "duplicate"
        if reason is None:
            seen.add(_key(sample))
            kept.append(sample)
        else:
            dropped[reason] += 1
    return kept, {name: dropped[name] for name in FILTERS}
