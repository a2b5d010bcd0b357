"""RL prompt data: training problems from files or tfds datasets, in the layouts they are
published in, as examples in a prompt template (the RL job batches them with
`pipeline.prompt_dataset`).

    config.data.sources = [
        {"path": "data/MATH/train", "format": "math", "reward": "accuracy"},
        {"path": "tfds:gsm8k:train", "format": "gsm8k", "reward": "accuracy", "n": 2000},
        {"path": "countdown.parquet", "format": "countdown", "reward": "countdown"},
    ]   # or named: {"math": {...}, "gsm8k": {...}}, so --config.data.sources.math.path=... works
    config.data.template = "r1_zero"     # or "r1_usage" / "auto": the tokenizer's chat template
    examples = prompt_examples(config)   # what rl.job trains on (pipeline.prompt_dataset)

A source's "path" is a .jsonl, .parquet or .csv file, a directory whose files of those kinds are
read in name order, or "tfds:NAME[:SPLIT]": split SPLIT ("train" when left out) of a prepared
tfds dataset in the source's "data_dir" (tfds's default when left out), read as
`r1jax.data.benchmarks` reads evaluation sets. "n" keeps the first n rows (all when 0); "lang"
(an ISO 639-1 code) gives every example the language its questions are posed in, which the
`language` reward reads. Formats:

    math        MATH train (EleutherAI/hendrycks_math): problem, solution; the gold answer is the
                solution's last \\boxed{...}, or the `answer` column when there is one
    gsm8k       openai/gsm8k train: question, answer (a worked solution ending "#### 42")
    deepscaler  agentica-org/DeepScaleR-Preview-Dataset: problem, answer
    countdown   Jiayi-Pan/Countdown-Tasks-3to4: nums, target; or TinyZero's processed parquet,
                reward_model.ground_truth = {numbers, target}
    prompt      a plain {prompt, answer} JSONL, `prompt` being the question text
    general     a general (non-reasoning) {prompt} JSONL, for reward models to score
                (`r1jax.scenarios`); an "answer" column is kept when there is one

Each example is {"id", "question", "answer", "reward", "prompt"} (+ "numbers", "target" for
countdown). "reward" is its source's reward name, or a tuple of names (general prompts, scored by
several reward models): in the RL job those rewards score only their own sources' completions
(`source_rewards`, the pool's ``scoped``), while rewards no source names (format, language)
score all. Each source's rewards must be configured terms (`config.rewards`).

Every row is parsed when its source is loaded, so a malformed one (a missing column, a gold
answer that does not parse) is a ValueError naming the file and line (the row, counted from 1,
in parquet, csv and tfds sources) before the job loads or compiles a model.

Nothing here imports `r1jax.rewards`: the data layer does not depend on the rewards, and the
\\boxed{} parser both need is `r1jax.answers`'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import ml_collections

from r1jax import templates
from r1jax.answers import last_boxed
from r1jax.data import records
from r1jax.data.benchmarks import (
    SUFFIXES,
    TFDS,
    countdown_problems,
    field,
    gsm8k_answer,
    read_records,
    tfds_rows,
)

REQUIRED_KEYS = ("path", "format", "reward")
OPTIONAL_KEYS = ("n", "data_dir", "lang")
ID_COLUMNS = ("unique_id", "ID", "id")  # a row's own id, when it has one
TFDS_SPLIT = "train"


def _text(row: dict, names: tuple[str, ...], where: str) -> str:
    """The stripped text of the first of `names` in `row`; an empty one is as unusable as a
    missing one."""
    text = str(field(row, names, where)).strip()
    if not text:
        raise ValueError(f"{where}: column {names[0]!r} is empty")
    return text


def math_example(row: dict, where: str) -> dict:
    """A MATH row: its problem and, as gold, its `answer` column when it has one, else the last
    \\boxed{} of its solution (an earlier box may hold an intermediate result)."""
    given = row.get("answer")
    answer = "" if given is None else str(given).strip()
    if not answer:
        answer = (last_boxed(_text(row, ("solution",), where)) or "").strip()
        if not answer:
            raise ValueError(f"{where}: the solution has no \\boxed{{...}} final answer")
    return {"question": _text(row, ("problem", "Problem", "question"), where), "answer": answer}


def gsm8k_example(row: dict, where: str) -> dict:
    """A GSM8K row: the gold answer is the number after the solution's last "####", without
    thousands separators."""
    return {"question": _text(row, ("question",), where),
            "answer": gsm8k_answer(_text(row, ("answer",), where), where)}


def deepscaler_example(row: dict, where: str) -> dict:
    """A DeepScaleR row: problem and final answer, as given."""
    return {"question": _text(row, ("problem",), where), "answer": _text(row, ("answer",), where)}


def countdown_example(row: dict, where: str) -> dict:
    """A Countdown row through the countdown benchmark's parser, so training and evaluation ask
    in the same words; the `countdown` reward reads its numbers and target."""
    problem = countdown_problems([row], where)[0]
    return {k: problem[k] for k in ("question", "answer", "numbers", "target")}


def prompt_example(row: dict, where: str) -> dict:
    """A plain {prompt, answer} row: the prompt is the question, templated like the others."""
    return {"question": _text(row, ("prompt",), where), "answer": _text(row, ("answer",), where)}


def general_example(row: dict, where: str) -> dict:
    """A general (non-reasoning) {prompt} row, which reward models score: the prompt is the
    question; a reference "answer", when the row has one, is kept for rules that read it."""
    example = {"question": _text(row, ("prompt",), where)}
    return {**example, "answer": _text(row, ("answer",), where)} if "answer" in row else example


@dataclasses.dataclass(frozen=True)
class Format:
    """A published layout: `parse(row, where)` gives an example's fields; `columns` (for the
    error of a missing tfds dataset) says what it reads."""

    parse: Callable[[dict, str], dict]
    columns: str


FORMATS = {
    "math": Format(math_example, "problem, solution or answer (MATH train)"),
    "gsm8k": Format(gsm8k_example, "question, answer ending '#### N' (openai/gsm8k)"),
    "deepscaler": Format(deepscaler_example, "problem, answer (DeepScaleR-Preview-Dataset)"),
    "countdown": Format(countdown_example, "nums, target (Jiayi-Pan/Countdown-Tasks-3to4) or "
                                           "TinyZero's reward_model.ground_truth"),
    "prompt": Format(prompt_example, "prompt, answer"),
    "general": Format(general_example, "prompt (and optionally answer)"),
}


def _files(path: Path) -> list[Path]:
    """`path` itself, or a directory's .jsonl, .parquet and .csv files in name order."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES) if path.is_dir() else []
    if not files:
        raise FileNotFoundError(f"prompt source {path}: no such file, nor a directory holding "
                                f"{', '.join(SUFFIXES)} files")
    return files


def _file_rows(file: Path) -> list[tuple[str, dict]]:
    """(where, row) for each row of `file`: the file and the row's line in a .jsonl file (blank
    lines are skipped, so a row's index need not be its line), else its row."""
    if file.suffix == ".jsonl":
        return [(f"{file}, line {n}", row) for n, row in records.read_jsonl(file)]
    return [(f"{file}, row {i}", row) for i, row in enumerate(read_records(file), 1)]


def _source_rows(path: str, data_dir, columns: str) -> list[tuple[str, str, dict]]:
    """(where, id, row) for each row of source `path`: where it is, for errors, and the id its
    example gets when the row has none (as benchmarks name them: file stem / index)."""
    if path.startswith(TFDS):
        dataset, _, split = path[len(TFDS):].partition(":")
        name = f"{TFDS}{dataset}:{split or TFDS_SPLIT}"
        rows = tfds_rows(f"prompt source {path!r}", columns, dataset, split or TFDS_SPLIT,
                         data_dir)
        tables = [(name, [(f"{name}, row {i}", row) for i, row in enumerate(rows, 1)])]
    else:
        tables = [(str(file), _file_rows(file)) for file in _files(Path(path))]
    return [(where, f"{Path(name).stem}/{i}", row)
            for name, rows in tables for i, (where, row) in enumerate(rows)]


def _example(parse: Callable, row, where: str, default_id: str, reward) -> dict:
    """One row's example, recording its reward name (or names). Errors raised below the
    format's own checks (int("x") in a countdown row) name the row too."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a {type(row).__name__}, not an object with columns")
    try:
        fields = parse(row, where)
    except (AttributeError, TypeError, ValueError) as e:
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where}: {e}") from e
    id_ = next((row[name] for name in ID_COLUMNS if row.get(name) is not None), default_id)
    return {"id": str(id_), **fields, "reward": reward}


def _checked(spec) -> dict:
    """`spec` as a dict, with exactly the keys a source may have and a known format."""
    spec = dict(spec)
    missing = [k for k in REQUIRED_KEYS if not spec.get(k)]
    unknown = sorted(set(spec) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise ValueError(f"prompt source {spec}: needs {', '.join(REQUIRED_KEYS)} (may have "
                         f"{', '.join(OPTIONAL_KEYS)}); missing {missing}, unknown {unknown}")
    if spec["format"] not in FORMATS:
        raise ValueError(f"prompt source {spec['path']!r}: unknown format {spec['format']!r}; "
                         f"known: {', '.join(FORMATS)}")
    return spec


def load_source(spec) -> list[dict]:
    """The examples of one source ({"path", "format", "reward"}, optionally "n", "data_dir" and
    "lang", the language its questions are posed in, which the `language` reward reads), every
    row parsed now so that a malformed one stops the job before training starts."""
    spec = _checked(spec)
    layout = FORMATS[spec["format"]]
    rows = _source_rows(str(spec["path"]), spec.get("data_dir"), layout.columns)
    rows = rows[:spec.get("n") or None]
    if not rows:
        raise ValueError(f"prompt source {spec['path']!r} holds no rows")
    reward = spec["reward"] if isinstance(spec["reward"], str) else reward_names(spec["reward"])
    examples = [_example(layout.parse, row, where, id_, reward) for where, id_, row in rows]
    return [{**ex, "lang": spec["lang"]} for ex in examples] if spec.get("lang") else examples


def reward_names(reward) -> tuple[str, ...]:
    """The reward names of a source's or an example's "reward": one name, or several."""
    if reward is None:
        return ()
    return (reward,) if isinstance(reward, str) else tuple(reward)


def source_examples(data_config, to_prompt: Callable[[str], str] = templates.r1_zero_prompt,
                    prompt_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """Every example of `data_config.sources` once, in source order, each with its question in
    the template `to_prompt`. With `prompt_tokens` (prompt -> its token count), prompts longer
    than `data_config.max_prompt_tokens` are an error, or dropped with `drop_long_prompts`."""
    examples = [{**example, "prompt": to_prompt(example["question"])}
                for spec in source_specs(data_config.sources) for example in load_source(spec)]
    if prompt_tokens is not None:
        examples = within_length(examples, prompt_tokens, data_config.max_prompt_tokens,
                                 data_config.drop_long_prompts)
    return examples


def within_length(examples: list[dict], prompt_tokens: Callable[[str], int], limit: int,
                  drop: bool) -> list[dict]:
    """The examples whose prompt is at most `limit` tokens; a longer one is an error naming it
    (the sampler's shapes and the model's positions were sized for `limit`) unless `drop`."""
    lengths = [prompt_tokens(example["prompt"]) for example in examples]
    kept = [example for example, n in zip(examples, lengths) if n <= limit]
    if len(kept) < len(examples):
        longest = max(range(len(examples)), key=lengths.__getitem__)
        report = (f"{len(examples) - len(kept)} of {len(examples)} prompts are longer than "
                  f"data.max_prompt_tokens={limit} (the longest, example "
                  f"{examples[longest]['id']!r}, has {lengths[longest]} tokens)")
        if not drop:
            raise ValueError(f"{report}: raise max_prompt_tokens or set "
                             f"data.drop_long_prompts=True to leave them out")
        print(f"{report}: left out (data.drop_long_prompts)")
    if not kept:
        raise ValueError(f"no prompt is within data.max_prompt_tokens={limit}")
    return kept


def prompt_template(template: str, tokenizer_dir) -> Callable[[str], str]:
    """question -> prompt in `template` ("r1_zero", "r1_usage" or "auto", as
    `templates.prompt_function`); without a tokenizer directory (the toy world's tokenizer) there
    is no chat template, so "auto" is r1_zero."""
    if not tokenizer_dir and template in ("r1_zero", "auto"):
        return templates.r1_zero_prompt
    if not tokenizer_dir:
        raise ValueError(f"template {template!r} needs a checkpoint's chat template: set "
                         f"config.tokenizer or config.model.hf_path")
    return templates.prompt_function(template, tokenizer_dir)[1]


def source_specs(sources) -> list:
    """The source specs of ``config.data.sources``: a sequence of specs, or named specs (a
    mapping or ConfigDict, read in name order), whose names let a command line set one source's
    field: ``--config.data.sources.math.path=/data/MATH/train``."""
    return [sources[name] for name in sorted(sources.keys())] if hasattr(sources, "keys") \
        else list(sources)


def source_rewards(data_config) -> frozenset:
    """The rewards the prompt sources name: each scores only its own sources' completions
    (`rewards.RewardScorer`'s ``scoped``)."""
    return frozenset(name for spec in source_specs(data_config.get("sources") or ())
                     for name in reward_names(spec["reward"]))


def _check_rewards(sources, configured) -> None:
    """Each source's reward must be a configured reward term, so that a misspelt name stops the
    job now rather than going unnoticed until the pool scores by source."""
    for spec in map(_checked, source_specs(sources)):
        for name in reward_names(spec["reward"]):
            if name not in configured:
                raise ValueError(f"prompt source {spec['path']!r}: reward {name!r} is not in "
                                 f"config.rewards ({', '.join(configured)})")


def check_room(config, max_position: int, new_tokens: str) -> None:
    """The longest prompt the sources allow (``data.max_prompt_tokens``) and the new tokens
    (the config key ``new_tokens``, e.g. "rl.max_new_tokens") fit the model's positions."""
    section, key = new_tokens.split(".")
    max_new_tokens = config[section][key]
    if config.data.get("sources") and config.data.max_prompt_tokens + max_new_tokens > max_position:
        raise ValueError(f"data.max_prompt_tokens={config.data.max_prompt_tokens} + "
                         f"{new_tokens}={max_new_tokens} exceed the model's max_position "
                         f"{max_position}")


def prompt_examples(config, prompt_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """The RL job's prompt data, each example once in order (what rejection sampling samples
    from): `config.data.sources` in `config.data.template` ("r1_zero" when unset) when the
    config lists sources (their length checked by `prompt_tokens`, see `source_examples`), else
    the toy world's train problems."""
    if not config.data.get("sources"):
        from r1jax import toy

        return toy.train_examples(config.data)
    _check_rewards(config.data.sources, config.rewards)
    to_prompt = prompt_template(config.data.get("template", "r1_zero"),
                                config.tokenizer or config.model.hf_path)
    return source_examples(config.data, to_prompt, prompt_tokens)


def general_examples(config, prompt_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """The general prompts of ``config.general.source`` (a prompt source, format "general" as a
    rule; none without a ``general`` section) in the reasoning prompts' template, their length
    checked as `source_examples` checks it (`r1jax.scenarios` mixes them in)."""
    if not config.get("general"):
        return []
    data = ml_collections.ConfigDict({"sources": (dict(config.general.source),),
                                      "max_prompt_tokens": config.data.max_prompt_tokens,
                                      "drop_long_prompts": config.data.drop_long_prompts})
    _check_rewards(data.sources, config.rewards)
    to_prompt = prompt_template(config.data.get("template", "r1_zero"),
                                config.tokenizer or config.model.hf_path)
    return source_examples(data, to_prompt, prompt_tokens)
