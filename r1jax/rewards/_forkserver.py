"""What the reward pool's fork server imports before it forks any worker.

The first math-verify comparison in a process spends about half a second on lazy imports and on
building the ANTLR parser's caches. Doing it once here means every worker, and every replacement
of a killed one, starts warm.
"""

from r1jax.rewards.math import math_equal

for _pred, _gold in [
    ("0.5", r"\frac{1}{2}"),
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
    ("[1, 3)", "(1, 3]"),
    (r"2\pi", "x^2 + 1"),
    ("3.50", "7/2"),
]:
    math_equal(_pred, _gold)
