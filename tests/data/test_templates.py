from r1jax import templates


def test_r1_zero_prompt_is_the_paper_template_in_one_paragraph():
    assert templates.r1_zero_prompt("Compute 2 + 3") == (
        "A conversation between User and Assistant. The user asks a question, and the Assistant "
        "solves it. The assistant first thinks about the reasoning process in the mind and then "
        "provides the user with the answer. The reasoning process and answer are enclosed within "
        "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
        "process here </think> <answer> answer here </answer>. User: Compute 2 + 3. Assistant:"
    )


def test_r1_usage_prompt():
    assert templates.r1_usage_prompt("Compute 2 + 3") == (
        "Compute 2 + 3\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
