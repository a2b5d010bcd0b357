"""The toy world's pretraining corpus: train-split problems in the R1-Zero template, answered the
way a base model that mostly guesses would answer them.

Every document is one line: the R1-Zero prompt (in `template_fraction` of documents; the others
start at its "User: " and save the ~90 tokens of its preamble), then a completion of one of two
kinds.

- Short: `<think> The answer is easy. </think> <answer> 936 </answer>`. Right with probability
  `short_accuracy[level - 1]` (by default always at level 1, rarely at level 4), otherwise a
  plausible wrong answer: one digit off, or the numbers combined into another value.
- Long (`long_fraction` of templated documents, `untemplated_long_fraction` of the others):
  step-by-step work, always ending with the right answer. Arithmetic goes column by column from
  the right ("7 + 9 = 16, write 6 carry 1."), sums keep a running total ("3 + 7 = 10. 10 + 2 =
  12."), Countdown tries combinations one pair at a time and says why a try fails ("But 15 is not
  22."). In `slip_fraction` of them one step is first computed wrong and then corrected ("Wait,
  that is wrong."). All end by checking the result ("Let me verify: 936 - 589 = 347. Correct.").

The step format is fixed and digit-level so a ~1M-parameter model can learn it, and the choice
between the two kinds is made by the first words after `<think>`: RL, which rewards the more
accurate long work, has one clear decision to shift. Reflective words (the paper's ten) occur
only in long work, in their natural role.

Two languages (`languages=("en", "kalo")`, `r1jax.data.languages`): each document's question is
posed in one of them, drawn uniformly, and its reasoning is in the same language, except that with
`mixing` each phrase (a step, a slip, a check, "Correct.") is written in the other language with
that probability, as R1-Zero mixes languages in its chains of thought. The R1-Zero template's
preamble stays English, as in the paper, and the answer is a number or an equation. A Kalo
document with one phrase mixed back into English:

    User: Pelu 3 + 7 + 2. Assistant: <think> 3 + 7 = 10. 10 + 2 = 12. The result is 12. Sami nemi
    veziro: 12 - 2 = 10. Zirok. </think> <answer> 12 </answer>

(one line in the corpus). Languages and mixing are drawn apart from the rest, so the problems and
the reasoning are those of the English corpus of the same seed.

R1's cold-start data (`readable_completion`, written by the `cold_start_data` job in
`r1jax.toy`) is the same long work, never mixed, in R1's readable format: the reasoning, then a
summary for the reader between </think> and <answer>.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Iterator

from r1jax.data.languages import EN, check_languages, translate
from r1jax.data.tasks import (
    LEVELS,
    TASKS,
    Arithmetic,
    Countdown,
    Problem,
    Sums,
    combine,
    sample_problem,
)
from r1jax.templates import r1_zero_prompt

USER_TURN = "User: "  # where documents without the template's preamble start
ASSISTANT_TURN = "Assistant:"  # where a document's prompt ends

_SHORT_THINK = "The answer is easy."
_SLIPS = (
    "Wait, that is wrong.",
    "Wait, that is a mistake, retry:",
    "But that is an error.",
    "However, that is wrong, retry:",
)
_CHECKS = ("Let me check:", "Let me verify:", "Let me evaluate it again:")
_FAILS = (
    "But {value} is not {target}.",
    "{value} is not {target}, retry.",
    "However, {value} is wrong.",
)
_INVERSE = {"+": "-", "-": "+", "*": "/"}


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    tasks: tuple[str, ...] = ("arithmetic", "countdown")  # drawn uniformly
    level_mix: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # weights of levels 1..4
    long_fraction: float = 0.08  # documents with step-by-step work
    slip_fraction: float = 0.3  # long documents with one step corrected
    short_accuracy: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)  # short answers right, per level
    template_fraction: float = 1.0  # documents with the R1-Zero preamble
    # Long work among the other documents (None: long_fraction). Set apart, the step-by-step
    # skill is learned from many plain documents while the templated ones set how often the
    # base model chooses it when prompted with the R1-Zero template.
    untemplated_long_fraction: float | None = None
    languages: tuple[str, ...] = (EN,)  # a document's question is in one of them, drawn uniformly
    # The probability that a phrase of a completion's reasoning is written in the other of the two
    # `languages`, not the question's: R1-Zero's language mixing, for the language reward to fix.
    mixing: float = 0.0

    def __post_init__(self):
        if not self.tasks or not set(self.tasks) <= set(TASKS):
            raise ValueError(f"Corpus tasks {self.tasks} must be a non-empty subset of {TASKS}.")
        if len(self.level_mix) != len(LEVELS) or len(self.short_accuracy) != len(LEVELS):
            raise ValueError(f"level_mix and short_accuracy need one entry per level {LEVELS}.")
        fractions = (self.long_fraction, self.slip_fraction, self.template_fraction,
                     self.long_fraction if self.untemplated_long_fraction is None
                     else self.untemplated_long_fraction)
        if not all(0.0 <= f <= 1.0 for f in (*fractions, *self.short_accuracy)):
            raise ValueError("long_fraction, slip_fraction, template_fraction, "
                             "untemplated_long_fraction and short_accuracy are probabilities in "
                             "[0, 1].")
        check_languages(self.languages, "CorpusConfig")
        if not 0.0 <= self.mixing <= 1.0 or (self.mixing and len(self.languages) < 2):
            raise ValueError(f"mixing={self.mixing} must be a probability in [0, 1], and above 0 "
                             f"needs two languages to mix (languages={self.languages}).")


_Step = tuple[Callable[[int], str], int]  # the step's text given its computed value; the value


def _carry_step(head: str, value: int, last: bool) -> _Step:
    """A column that carries: "7 + 9 = 16, write 6 carry 1."; the leftmost one writes its whole
    value."""

    def render(v: int) -> str:
        write = f"{v}" if last else f"{v % 10}{f' carry {v // 10}' if v >= 10 else ''}"
        return f"{head} = {v}, write {write}."

    return render, value


def _columns(p: Arithmetic) -> list[_Step]:
    """Column by column, rightmost first."""
    xs = [int(d) for d in reversed(str(p.a))]
    ys = [int(d) for d in reversed(str(p.b))]
    steps, carry = [], 0
    for i, x in enumerate(xs):
        last = i == len(xs) - 1
        if p.op == "*":
            value = x * p.b + carry
            steps.append(_carry_step(f"{x} * {p.b}{f' + {carry}' if carry else ''}", value, last))
            carry = value // 10
        elif p.op == "+":
            value = x + ys[i] + carry
            steps.append(_carry_step(f"{x} + {ys[i]}{' + 1' if carry else ''}", value, last))
            carry = value // 10
        else:  # "17 - 9 = 8, write 8 borrow 1."
            value = x - ys[i] - carry
            head = f"{'1' * (value < 0)}{x} - {ys[i]}{' - 1' if carry else ''}"
            tail = " borrow 1" * (value < 0)
            steps.append((lambda v, h=head, t=tail: f"{h} = {v}, write {v}{t}.", value % 10))
            carry = int(value < 0)
    return steps


def _work(steps: list[_Step], rng: random.Random, slip: bool) -> list[str]:
    """The steps' texts; with `slip`, one step is first written with a value one off, then
    corrected."""
    slip_at = rng.randrange(len(steps)) if slip else -1
    texts = []
    for i, (render, value) in enumerate(steps):
        if i == slip_at:
            wrong = value + 1 if value == 0 or rng.random() < 0.5 else value - 1
            texts += [render(wrong), rng.choice(_SLIPS)]
        texts.append(render(value))
    return texts


def _long_arithmetic(p: Arithmetic, rng: random.Random, slip: bool) -> list[str]:
    inverse = f"{p.result} {_INVERSE[p.op]} {p.b} = {p.a}"
    result = f"The result is {p.result}."
    return [*_work(_columns(p), rng, slip), result, f"{rng.choice(_CHECKS)} {inverse}.", "Correct."]


def _long_sums(p: Sums, rng: random.Random, slip: bool) -> list[str]:
    steps, total = [], p.terms[0]
    for term in p.terms[1:]:
        steps.append((lambda v, h=f"{total} + {term}": f"{h} = {v}.", total + term))
        total += term
    inverse = f"{p.result} - {p.terms[-1]} = {p.result - p.terms[-1]}"
    result = f"The result is {p.result}."
    return [*_work(steps, rng, slip), result, f"{rng.choice(_CHECKS)} {inverse}.", "Correct."]


def _wrong_combination(p: Countdown, rng: random.Random):
    """A combination of the numbers that misses the target; None if a few tries all hit it."""
    for _ in range(20):
        combination = combine(p.numbers, rng)
        if combination.value != p.target:
            return combination
    return None


def _try(steps, rng: random.Random, slip: bool = False) -> list[str]:
    """A combination's (x, op, y, z) steps as a try: "Try", "3 * 5 = 15.", "15 + 7 = 22." """
    steps = [(lambda v, h=f"{x} {op} {y}": f"{h} = {v}.", z) for x, op, y, z in steps]
    return ["Try", *_work(steps, rng, slip)]


def _long_countdown(p: Countdown, rng: random.Random, slip: bool) -> list[str]:
    phrases = []
    for _ in range(rng.randrange(2)):
        if (miss := _wrong_combination(p, rng)) is not None:
            fail = rng.choice(_FAILS).format(value=miss.value, target=p.target)
            phrases += [*_try(miss.steps, rng), fail]
    phrases += _try(p.solution.steps, rng, slip)
    return [*phrases, f"{rng.choice(_CHECKS)} {p.solution.equation} = {p.target}.", "Correct."]


def _short_answer(p: Problem, rng: random.Random, right: bool) -> str:
    if isinstance(p, Countdown):
        miss = None if right else _wrong_combination(p, rng)
        return (miss or p.solution).equation
    if right:
        return str(p.result)
    off = 10 ** rng.randrange(len(str(p.result)))  # one digit off
    return str(p.result - off if p.result >= off and rng.random() < 0.5 else p.result + off)


# The phrases of a problem's long work, in English: each is one sentence or less ("Try"), the unit
# that `mixing` switches between languages.
_LONG_WORK = {Arithmetic: _long_arithmetic, Countdown: _long_countdown, Sums: _long_sums}


def _gold_answer(p: Problem) -> str:
    """What a right completion puts in <answer>: the number, or Countdown's solution equation."""
    return p.solution.equation if isinstance(p, Countdown) else str(p.result)


def _summary(p: Problem) -> str:
    """The solution restated as an equation with no words ("3 + 7 + 2 = 12.", "936 - 589 = 347.",
    "3 * 5 + 7 = 22."), so that it reads the same in every language."""
    if isinstance(p, Countdown):
        return f"{p.solution.equation} = {p.target}."
    if isinstance(p, Sums):
        return f"{' + '.join(map(str, p.terms))} = {p.result}."
    return f"{p.a} {p.op} {p.b} = {p.result}."


def _reasoning(phrases: list[str], lang: str, config: CorpusConfig,
               lang_rng: random.Random) -> str:
    """The phrases in `lang`, each switched to the other of `config.languages` with probability
    `config.mixing` (R1-Zero's language mixing, a sentence at a time). No draw without mixing."""
    other = next((code for code in config.languages if code != lang), lang)
    return " ".join(
        translate(phrase, other if config.mixing and lang_rng.random() < config.mixing else lang)
        for phrase in phrases
    )


def document(p: Problem, rng: random.Random, config: CorpusConfig, lang: str,
             lang_rng: random.Random) -> str:
    """One corpus line: the R1-Zero prompt of `p` posed in `lang` (or its part from "User: "
    on) and a completion drawn as `config` says, its reasoning in `lang` but for the phrases
    `config.mixing` switches. Those switches are drawn from `lang_rng`, everything else from
    `rng`."""
    templated = rng.random() < config.template_fraction
    long_fraction = config.long_fraction
    if not templated and config.untemplated_long_fraction is not None:
        long_fraction = config.untemplated_long_fraction
    if rng.random() < long_fraction:
        slip = rng.random() < config.slip_fraction
        phrases = _LONG_WORK[type(p)](p, rng, slip)
        answer = _gold_answer(p)
    else:
        phrases = [_SHORT_THINK]
        answer = _short_answer(p, rng, rng.random() < config.short_accuracy[p.level - 1])
    prompt = r1_zero_prompt(translate(p.question, lang))  # the template's preamble stays English
    if not templated:
        prompt = prompt[prompt.index(USER_TURN):]
    think = _reasoning(phrases, lang, config, lang_rng)
    return f"{prompt} <think> {think} </think> <answer> {answer} </answer>"


def readable_completion(p: Problem, lang: str, rng: random.Random, slip_fraction: float) -> str:
    """A completion of R1's cold-start data for `p`: its long work (with a corrected slip with
    probability `slip_fraction`: R1's cold-start chains still reflect) wholly in `lang`, then a
    summary for the reader and the answer, in R1's readable format (the `summary_format` reward):

        " <think> 3 + 7 = 10. 10 + 2 = 12. ... </think> 3 + 7 + 2 = 12. <answer> 12 </answer>"

    The corpus's long work without its language mixing, since the cold start is the readable,
    language-consistent data the model is first tuned on; everything is drawn from `rng`."""
    slip = rng.random() < slip_fraction
    work = translate(" ".join(_LONG_WORK[type(p)](p, rng, slip)), lang)
    return f" <think> {work} </think> {_summary(p)} <answer> {_gold_answer(p)} </answer>"


def split_prompt(document: str) -> tuple[str, str]:
    """(prompt, completion) of a corpus document: the prompt ends with the template's
    "Assistant:", the completion starts with its " <think>"."""
    end = document.index(ASSISTANT_TURN) + len(ASSISTANT_TURN)
    return document[:end], document[end:]


def corpus_documents(seed: int, n: int, config: CorpusConfig = CorpusConfig()) -> Iterator[str]:
    """`n` documents from train-split problems, the same for the same seed and config.

    Languages are drawn from a generator of their own, so the problems and the reasoning are
    those of the English corpus of the same seed whatever `config.languages` and `mixing` are,
    and an English-only config's documents are the corpus as it was before it had languages."""
    rng = random.Random(f"corpus/{seed}")
    lang_rng = random.Random(f"corpus/{seed}/lang")
    for _ in range(n):
        task = rng.choice(config.tasks)
        level = rng.choices(LEVELS, weights=config.level_mix)[0]
        lang = lang_rng.choice(config.languages)
        yield document(sample_problem(task, "train", level, rng), rng, config, lang, lang_rng)


def write_corpus(
    path: str | os.PathLike, seed: int, n: int, config: CorpusConfig = CorpusConfig()
) -> None:
    """Writes `corpus_documents(seed, n, config)` to `path`, one document per line (the form
    SentencePiece training reads)."""
    with open(path, "w") as f:
        f.writelines(doc + "\n" for doc in corpus_documents(seed, n, config))
