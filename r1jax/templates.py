"""Prompt templates: R1-Zero's training template, R1's recommended usage prompt for maths, and
checkpoints' own chat templates (rendered as transformers renders them).

The R1-Zero template is R1-v1 Table 1 as one paragraph with single spaces. It ends the question
with its own ". ", so the toy world's questions carry no closing punctuation.

    name, to_prompt = prompt_function("auto", tokenizer_dir)   # r1_usage if it has a chat template
    prompt_text = to_prompt("What is 1 + 1?")
"""

import json
from pathlib import Path

import jinja2.sandbox

THINK_PREFIX = "<think>\n"

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


def summary_part(completion: str) -> str:
    """What R1's helpfulness reward model reads of a response: its summary for the reader, the
    text after the reasoning's </think> (with the answer); a response without </think> is all
    summary."""
    end = completion.find("</think>")
    return completion if end < 0 else completion[end + len("</think>"):]


def r1_usage_prompt(question: str) -> str:
    """The question, then on its own line the instruction DeepSeek recommends for maths."""
    return f"{question}\n{R1_USAGE_INSTRUCTION}"


def chat_template(tokenizer_dir) -> str | None:
    """The jinja2 chat template of an HF tokenizer: chat_template.jinja, else the "chat_template"
    of tokenizer_config.json (a string, or a list of named templates whose "default" is taken)."""
    tokenizer_dir = Path(tokenizer_dir)
    if (tokenizer_dir / "chat_template.jinja").is_file():
        return (tokenizer_dir / "chat_template.jinja").read_text()
    config_file = tokenizer_dir / "tokenizer_config.json"
    template = (json.loads(config_file.read_text()).get("chat_template")
                if config_file.is_file() else None)
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template


def render_chat(template: str, messages, special_tokens: dict) -> str:
    """`template` rendered as transformers renders chat templates, with the generation prompt."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False,
                                                                    indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            **special_tokens)


def prompt_function(template: str, tokenizer_dir):
    """(name, question -> prompt text). "r1_zero": the R1-Zero template. "r1_usage": DeepSeek's
    usage recommendation: the question and the \\boxed{} instruction as the only (user) message of
    the checkpoint's chat template, the response forced to begin with "<think>\\n". "auto":
    r1_usage when the checkpoint has a chat template, else r1_zero."""
    source = chat_template(tokenizer_dir)
    if template == "auto":
        template = "r1_zero" if source is None else "r1_usage"
    if template == "r1_zero":
        return template, r1_zero_prompt
    if template != "r1_usage":
        raise ValueError(f"unknown template {template!r}; use r1_zero, r1_usage or auto")
    if source is None:
        raise ValueError(f"template r1_usage needs a chat template; {tokenizer_dir} has no "
                         f"chat_template.jinja or tokenizer_config.json 'chat_template'")
    config_file = Path(tokenizer_dir) / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    special = {}
    for name in ("bos_token", "eos_token"):
        value = config.get(name) or ""
        special[name] = value.get("content", "") if isinstance(value, dict) else value

    def prompt(question):
        text = render_chat(source, [{"role": "user",
                                     "content": r1_usage_prompt(question)}], special)
        return text if text.endswith(THINK_PREFIX) else text + THINK_PREFIX  # R1-Distill's adds it

    return template, prompt
