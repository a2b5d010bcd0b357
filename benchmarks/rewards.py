"""Reward scoring throughput: the R1-Zero rule reward (accuracy + format) on one GRPO step's
worth of completions (32 problems x 16 samples = 512), through the process pool.

    python benchmarks/rewards.py [--workers 2]

Completions look like R1-Zero output after the template: <think> reasoning with some LaTeX
</think> <answer> ... \\boxed{...} </answer>, about half right (often in another form than the
gold: 0.5 for \\frac{1}{2}, 1000 for 1,000), the rest wrong, unboxed or truncated, and four
pathological ones per batch (a power tower, 100 KB of repetition, an unclosed box, 600-deep
braces). Gold answers mix MATH-style LaTeX, GSM8K numbers and AIME integers. Each batch has new
problems, so the per-process parse cache only helps within a group, as in training. The last row
swaps in two answers built to hit math_equal's time bound (nested parentheses, exponential in the
parser), to show what the bound costs.
"""

import argparse
import random
import time

import numpy as np

from r1jax import rewards

GROUPS, GROUP_SIZE = 32, 16


def _problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(gold, equivalent forms, wrong answers) of one random problem; answer types weighted
    roughly as in a GSM8K + MATH + AIME training mix (most answers are integers)."""
    a, b = rng.randint(1, 9), rng.randint(11, 29)
    n = rng.randint(1000, 99999)
    kind = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
    if kind == "gsm8k":
        return f"{n:,}", [str(n), f"{n:,}"], [str(n + 10), str(n // 10)]
    if kind == "aime":
        return f"{a * b:03d}", [str(a * b), f"{a * b:03d}"], [str(a * b + 1)]
    if kind == "integer":
        return str(b - 20), [str(b - 20)], [str(20 - b), str(b)]
    if kind == "fraction":
        return (
            rf"\frac{{{a}}}{{{b}}}",
            [rf"\dfrac{{{a}}}{{{b}}}", f"{a}/{b}"],
            [rf"\frac{{{b}}}{{{a}}}", str(a)],
        )
    if kind == "radical":
        return (
            rf"\frac{{\sqrt{{{a + 1}}}}}{{2}}",
            [rf"\frac{{\sqrt{a + 1}}}{{2}}", rf"\sqrt{{{a + 1}}}/2"],
            [rf"\sqrt{{{a + 1}}}"],
        )
    if kind == "pi":
        return rf"{a}\pi", [rf"{a} \pi", rf"\pi \cdot {a}"], [rf"{a + 1}\pi", str(a)]
    if kind == "polynomial":
        return f"x^2 + {a}x", [f"{a}x + x^2", f"x(x + {a})"], [f"x^2 - {a}x"]
    if kind == "interval":
        return f"[{a}, {b})", [f"[{a},{b})"], [f"({a}, {b})", f"[{a}, {b}]"]
    return f"{n / 100:.2f}", [f"{n / 100:.2f}", rf"\frac{{{n}}}{{100}}"], [f"{n / 100 + 1:.2f}"]


_WEIGHTS = {
    "gsm8k": 0.30,
    "aime": 0.10,
    "integer": 0.20,
    "fraction": 0.12,
    "radical": 0.08,
    "pi": 0.05,
    "polynomial": 0.05,
    "interval": 0.05,
    "decimal": 0.05,
}

_REASONING = (
    "First, let me restate the problem. We need to find the value asked for. Let $x$ be the "
    "unknown; then $x^2 + {a}x = {b}$, so we can try to factor. Wait, I should double-check "
    "that step: "
    "substituting back gives ${a} \\cdot {b} = {c}$, which is consistent. "
)


def _completion(rng: random.Random, answer: str) -> str:
    a, b = rng.randint(2, 9), rng.randint(10, 99)
    think = _REASONING.format(a=a, b=b, c=a * b) * rng.randint(2, 8)
    style = rng.random()
    if style < 0.8:
        return f"<think>\n{think}</think>\n<answer>The answer is $\\boxed{{{answer}}}$.</answer>"
    if style < 0.9:
        return f"<think>\n{think}</think>\n<answer>{answer}</answer>"
    return f"<think>\n{think}"  # truncated: no answer


PATHOLOGICAL = [
    r"<think>big</think><answer>\boxed{9^{9^{9^9}}}</answer>",
    "<think>" + "Wait, let me recompute that. " * 3500,
    r"<think>ok</think><answer>\boxed{\frac{1}{2}</answer>",
    r"<think>ok</think><answer>\boxed{" + "{" * 600 + "1" + "}" * 600 + "}</answer>",
]
SLOW = r"<think>hm</think><answer>\boxed{" + "(" * 12 + "1" + ")" * 12 + "}</answer>"


def make_batch(seed: int, extra: list[str] = ()) -> tuple[list[str], list[dict]]:
    rng = random.Random(seed)
    completions, examples = [], []
    for _ in range(GROUPS):
        gold, same, wrong = _problem(rng)
        for _ in range(GROUP_SIZE):
            completions.append(_completion(rng, rng.choice(same if rng.random() < 0.5 else wrong)))
            examples.append({"answer": gold})
    for text in [*PATHOLOGICAL, *extra]:
        i = rng.randrange(len(completions))
        completions[i] = text
    return completions, examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    rows = []
    start = time.perf_counter()
    with rewards.RewardScorer({"accuracy": 1.0, "format": 1.0}, num_workers=args.workers) as scorer:
        rows.append(("start the pool", 0, time.perf_counter() - start, None))
        for label, seed, extra in [
            ("score 512, first call", 0, []),
            ("score 512, new batch", 1, []),
            ("score 512, new batch", 2, []),
            ("score 512, new batch", 3, []),
            ("score 512, 2 of them at the time bound", 4, [SLOW] * 2),
        ]:
            completions, examples = make_batch(seed, extra)
            start = time.perf_counter()
            _, terms, stats = scorer.score(completions, examples)
            seconds = time.perf_counter() - start
            slowest = max(v for k, v in stats.items() if k.endswith("_slowest_s"))
            rows.append((label, len(completions), seconds, slowest))
            problems = {
                k: v for k, v in stats.items() if k.endswith(("_errors", "_timeouts")) and v
            }
            assert not problems, problems
    completions, examples = make_batch(5)
    start = time.perf_counter()
    rewards.accuracy(completions, [e["answer"] for e in examples])
    rewards.format_reward(completions)
    rows.append(
        ("same, in this process (no pool)", len(completions), time.perf_counter() - start, None)
    )

    print(
        f"reward scoring, accuracy + format, {args.workers} workers; accuracy mean "
        f"{np.nanmean(terms['accuracy']):.2f} on the last batch"
    )
    print(f"{'what':<36} {'count':>6} {'total s':>8} {'compl/s':>8} {'slowest call s':>15}")
    for label, count, seconds, slowest in rows:
        rate = f"{count / seconds:8.0f}" if count else f"{'':8}"
        slow = f"{slowest:15.3f}" if slowest is not None else ""
        print(f"{label:<36} {count or '':>6} {seconds:8.3f} {rate} {slow}")


if __name__ == "__main__":
    main()
