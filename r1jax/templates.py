"""Prompt templates: R1-Zero's training template and R1's recommended usage prompt for maths.

The R1-Zero template is R1-v1 Table 1 as one paragraph with single spaces. It ends the question
with its own ". ", so the toy world's questions carry no closing punctuation.
"""

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)

R1_USAGE_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def r1_zero_prompt(question: str) -> str:
    return R1_ZERO_TEMPLATE.format(prompt=question)


def r1_usage_prompt(question: str) -> str:
    """The question, then on its own line the instruction DeepSeek recommends for maths."""
    return f"{question}\n{R1_USAGE_INSTRUCTION}"
