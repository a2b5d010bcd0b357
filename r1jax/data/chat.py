"""The toy world's general (non-reasoning) prompts, for R1's RL for all scenarios (§2.3.4),
where reward models score what no rule can: a request to repeat a few numbers, and what a
helpful, an unhelpful and a harmful answer to it are.

    question   "Repeat 4 9 1"
    helpful    " <think> The answer is easy. </think> 4 9 1. <answer> 4 9 1 </answer>"
    unhelpful  the same format, but the summary refuses ("I can not.") or gets a number wrong
    harmful    a leaked secret anywhere in the response ("The secret is 4172."), the toy
               world's stand-in for content a harmlessness reward model must learn to punish

The `general_data` job (`r1jax.toy.general_data_job`) writes, from these:
- prompts an RL stage mixes in (`r1jax.scenarios`), each with its reference answer;
- SFT records, mostly helpful but with unhelpful and harmful answers in given fractions, so the
  SFT model has something for RL to correct;
- preference pairs for two reward models, as R1 trains them: helpfulness on the summary (the text
  after </think>, `templates.summary_part`: a helpful summary over an unhelpful one) and
  harmlessness on the whole response (a response over the same response with a leaked secret).

`is_helpful` and `is_harmful` are the rules the reward models should learn; the RL stage logs
them as zero-weight reward terms (`toy_helpful`, `toy_harmless`), so a reward model that is
hacked (its score rising while the rule's does not) shows.
"""

from __future__ import annotations

import random

from r1jax.templates import r1_zero_prompt, summary_part

THINK = "The answer is easy."
REFUSAL = "I can not."
SECRET = "The secret is {code}."
_SECRET_WORD = "secret"


def request(rng: random.Random) -> tuple[str, str]:
    """(question, reference answer): "Repeat 4 9 1" and "4 9 1", two to four digits 1-9."""
    numbers = " ".join(str(rng.randint(1, 9)) for _ in range(rng.randint(2, 4)))
    return f"Repeat {numbers}", numbers


def _wrong(answer: str, rng: random.Random) -> str:
    """``answer`` with one number changed or dropped."""
    numbers = answer.split()
    i = rng.randrange(len(numbers))
    if len(numbers) > 2 and rng.random() < 0.5:
        return " ".join(numbers[:i] + numbers[i + 1:])
    numbers[i] = str(int(numbers[i]) % 9 + 1)
    return " ".join(numbers)


def completion(answer: str, rng: random.Random, helpful: bool = True,
               harmful: bool = False) -> str:
    """A response in R1's readable format: helpful (the numbers repeated) or not (a refusal or
    a wrong number, half and half), with a leaked secret in its reasoning or its summary when
    ``harmful``."""
    if helpful:
        summary, said = f"{answer}.", answer
    elif rng.random() < 0.5:
        summary, said = REFUSAL, "no"
    else:
        said = _wrong(answer, rng)
        summary = f"{said}."
    think = THINK
    if harmful:
        secret = SECRET.format(code=rng.randint(1000, 9999))
        if rng.random() < 0.5:
            think = f"{THINK} {secret}"
        else:
            summary = f"{secret} {summary}"
    return f" <think> {think} </think> {summary} <answer> {said} </answer>"


def is_helpful(text: str, answer: str) -> bool:
    """The rule: the summary ends with the requested numbers and the answer is exactly them
    (whatever else the summary says first: harm is the other rule's business)."""
    head, _, tail = summary_part(text).partition("<answer>")
    numbers, said = answer.split(), tail.partition("</answer>")[0].split()
    return said == numbers and head.strip().rstrip(".").split()[-len(numbers):] == numbers


def is_harmful(text: str) -> bool:
    """The rule: the response leaks a secret (anywhere, reasoning included)."""
    return _SECRET_WORD in text.lower()


def general_prompts(n: int, seed: int) -> list[dict]:
    """``n`` general prompt rows {"id", "prompt", "answer"} (the question alone: an RL source
    in format "general" templates it)."""
    rng = random.Random(f"general/{seed}")
    return [{"id": f"general/{seed}/{i}", "prompt": question, "answer": answer}
            for i, (question, answer) in enumerate(request(rng) for _ in range(n))]


def sft_records(n: int, seed: int, unhelpful_fraction: float,
                harmful_fraction: float) -> list[dict]:
    """``n`` SFT records for general prompts in the R1-Zero template: a helpful answer but in
    the given fractions of records (drawn apart), each with its provenance."""
    rng = random.Random(f"general_sft/{seed}")
    rows = []
    for i in range(n):
        question, answer = request(rng)
        helpful = rng.random() >= unhelpful_fraction
        harmful = rng.random() < harmful_fraction
        rows.append({"prompt": r1_zero_prompt(question),
                     "completion": completion(answer, rng, helpful, harmful),
                     "source": {"stage": "general_data", "kind": "sft", "index": i,
                                "helpful": helpful, "harmful": harmful}})
    return rows


def preference_pairs(n: int, seed: int, aspect: str) -> list[dict]:
    """``n`` pairs {"prompt", "chosen", "rejected", "source"} for a reward model of ``aspect``:
    "helpfulness" compares summaries (`summary_part` of a helpful and an unhelpful response, each
    harmful or not alike), "harmlessness" whole responses (one without and one with a secret,
    helpful or not alike)."""
    if aspect not in ("helpfulness", "harmlessness"):
        raise ValueError(f"aspect {aspect!r} is not 'helpfulness' or 'harmlessness'")
    rng = random.Random(f"general_pairs/{aspect}/{seed}")
    rows = []
    for i in range(n):
        question, answer = request(rng)
        if aspect == "helpfulness":
            harmful = rng.random() < 0.5
            chosen = summary_part(completion(answer, rng, True, harmful))
            rejected = summary_part(completion(answer, rng, False, harmful))
        else:
            helpful = rng.random() < 0.5
            chosen = completion(answer, rng, helpful, False)
            rejected = completion(answer, rng, helpful, True)
        rows.append({"prompt": r1_zero_prompt(question), "chosen": chosen, "rejected": rejected,
                     "source": {"stage": "general_data", "kind": aspect, "index": i}})
    return rows
