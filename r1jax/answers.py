"""Final answers in LaTeX text: the last \\boxed{...}, as MATH solutions and R1's completions
mark them.

Pure string code with no r1jax imports, so both the data layer (gold answers of MATH solutions)
and the rewards (answers of completions) use one parser without the data layer importing the
rewards.
"""

import re

# A `\boxed{`, an escaped character (`\{`, `\}` and `\\` are text, not groups), or a brace.
_BRACE_TOKENS = re.compile(r"\\boxed\s*\{|\\.|[{}]", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance; one pass, linear in the text."""
    stack = []  # per open brace: where the content of its \boxed starts, or -1 for a plain brace
    last = None  # (start, end) of the complete \boxed that starts last
    for m in _BRACE_TOKENS.finditer(text):
        token = m.group()
        if token == "}":
            if stack:
                start = stack.pop()
                if start >= 0 and (last is None or start > last[0]):
                    last = (start, m.start())
        elif token == "{":
            stack.append(-1)
        elif token.startswith("\\boxed"):
            stack.append(m.end())
    return None if last is None else text[last[0] : last[1]]
