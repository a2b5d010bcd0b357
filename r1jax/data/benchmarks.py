"""Benchmarks: their problems (from local files in the formats they are published in, or tfds
datasets), the reward that judges them and the paper's evaluation defaults.

    bench = BENCHMARKS["math500"]
    problems = load("math500", data_dir)      # [{"id", "question", "answer", ...}]
    problems = load("toy_sums", data_dir, path="tfds:toy_world/sums")   # as tfds_builder wrote it
    correct, answer = rewards.judge(bench.reward, completion, problems[0])

A benchmark's file is `{data_dir}/{name}.jsonl`, `.parquet` or `.csv`, or a directory
`{data_dir}/{name}/` whose files of those kinds are all read in name order (AIME 2025 is published
as two files, I and II); `path=` names a file or directory directly. The columns are those of the
public releases:

    math500       HuggingFaceH4/MATH-500 test.jsonl: problem, answer (+ solution, subject, level,
                  unique_id)
    aime24        Maxwell-Jia/AIME_2024 aime_2024_problems.parquet: ID, Problem, Answer
                  (+ Solution);
                  lowercase id/problem/answer (HuggingFaceH4/aime_2024) read too
    aime25        opencompass/AIME2025 aime2025-I.jsonl, aime2025-II.jsonl: question, answer;
                  problem/answer (yentinglin/aime_2025, MathArena) read too
    gsm8k         openai/gsm8k test: question, answer (worked solution ending "#### 42")
    gpqa_diamond  Idavidrein/gpqa gpqa_diamond.csv: Question, Correct Answer, Incorrect Answer 1-3
                  (+ Record ID)
    countdown     Jiayi-Pan/Countdown-Tasks-3to4: nums, target; or TinyZero's processed parquet,
                  reward_model.ground_truth = {numbers, target}
    toy_arithmetic, toy_countdown, toy_sums
                  generated: r1jax.data.tasks.make_split(task, "test", n, seed, levels,
                  languages); or rows as make_split writes them: id, task, level, question,
                  answer (+ numbers, target, lang)

`path="tfds:NAME[:SPLIT]"` reads a prepared tfds dataset instead: split SPLIT ("test" when left
out; "test[:100]" slices) of NAME ("toy_world/sums": name and config, its latest version) in
`data_dir` (tfds's default when None), through tfds's random-access data source, which needs no
TensorFlow but needs the array_record (or parquet) file format. Its rows, bytes decoded to str,
have the columns above and go through the same parsing as a file's.

A toy benchmark given `path` keeps the rows of `levels`, in order, then the first `n`.
`r1jax.data.tfds_builder.build` writes toy_world/<task> as make_split(task, "test", test_size,
seed), whose first n rows are make_split(task, "test", n, seed); `load`'s `seed` only seeds
generated sets, and a set generated with `levels` is not the rows of those levels.

GPQA's options are shuffled per question with a fixed seed (the released files always list the
correct answer first); each problem keeps its shown `options` and the gold letter in `answer`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from r1jax.data import records, tasks

SUFFIXES = (".jsonl", ".parquet", ".csv")
TFDS = "tfds:"  # the prefix of a `path` that names a tfds dataset
LETTERS = "ABCD"
GPQA_SEED = 0



def read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl, .parquet or .csv file as dicts; a JSONL line that is not an object, or
    a file that is not UTF-8 text, is a ValueError naming the file (and line)."""
    if path.suffix == ".jsonl":
        return [row for _, row in records.read_jsonl(path)]
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from e
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    raise ValueError(f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)}")


def field(row: dict, names: tuple[str, ...], where: str):
    """The value of the first of `names` that `row` has (published releases spell columns
    differently); a ValueError naming `where` and the row's columns when it has none."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    if empty := [name for name in names if name in row]:
        raise ValueError(f"{where}: column {empty[0]!r} is empty (null)")
    raise ValueError(f"{where}: no column {' or '.join(map(repr, names))} in a row with columns "
                     f"{sorted(row)}")


def math_problems(rows, where, question=("problem", "Problem", "question"),
                  answer=("answer", "Answer"), ids=("unique_id", "ID", "id")) -> list[dict]:
    """MATH-500 / AIME rows: the problem text and its final answer."""
    out = []
    for i, row in enumerate(rows):
        id_ = next((row[n] for n in ids if row.get(n) is not None), f"{Path(where).stem}/{i}")
        out.append({"id": str(id_), "question": str(field(row, question, where)).strip(),
                    "answer": str(field(row, answer, where)).strip()})
    return out


def gsm8k_answer(solution: str, where: str) -> str:
    """The number after a GSM8K solution's last "####", without thousands separators."""
    _, marker, final = solution.rpartition("####")
    answer = final.strip().replace(",", "")
    if not marker or not answer:
        raise ValueError(f"{where}: the answer has no '#### <number>' line")
    return answer


def gsm8k_problems(rows, where) -> list[dict]:
    """GSM8K rows: the gold answer is the number after the solution's final "####"."""
    return [{"id": f"{Path(where).stem}/{i}",
             "question": str(field(row, ("question",), where)).strip(),
             "answer": gsm8k_answer(str(field(row, ("answer",), where)), f"{where}, row {i}")}
            for i, row in enumerate(rows)]


def gpqa_problems(rows, where, seed: int = GPQA_SEED) -> list[dict]:
    """GPQA rows as 4-option multiple choice, options shuffled by a per-question seeded rng (so a
    question's order does not depend on the other rows), in simple-evals' layout."""
    out = []
    for i, row in enumerate(rows):
        question = str(field(row, ("Question",), where)).strip()
        correct = str(field(row, ("Correct Answer",), where)).strip()
        texts = [correct] + [str(field(row, (f"Incorrect Answer {j}",), where)).strip()
                             for j in (1, 2, 3)]
        order = list(range(len(texts)))  # order[i]: which text is shown as option i
        random.Random(f"gpqa/{seed}/{question}").shuffle(order)
        options = [texts[j] for j in order]
        shown = "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, options))
        out.append({"id": str(row.get("Record ID") or f"{Path(where).stem}/{i}"),
                    "question": f"{question}\n\n{shown}", "options": options,
                    "answer": LETTERS[order.index(0)]})
    return out


def countdown_problems(rows, where) -> list[dict]:
    """Countdown rows (raw nums/target, or TinyZero's reward_model.ground_truth) in the toy
    world's question wording, scored by the `countdown` reward."""
    out = []
    for i, row in enumerate(rows):
        truth = (row.get("reward_model") or {}).get("ground_truth") or row
        numbers = [int(n) for n in field(truth, ("nums", "numbers"), where)]
        target = int(field(truth, ("target",), where))
        out.append({"id": f"{Path(where).stem}/{i}", "numbers": numbers, "target": target,
                    "answer": "",
                    "question": f"Using the numbers {numbers}, create an equation that equals "
                                f"{target}. Use +, -, * or / and each number exactly once"})
    return out


def toy_problems(task: str, levels, rows, where) -> list[dict]:
    """Toy-world rows, as make_split writes them, of `levels`; each must be a `task` problem (a
    toy_world/countdown source for toy_sums would otherwise be judged by the wrong reward)."""
    out = []
    for i, row in enumerate(rows):
        if field(row, ("task",), where) != task:
            raise ValueError(f"{where}, row {i}: a {row['task']!r} problem, not a {task!r} one")
        if field(row, ("level",), where) in levels:
            out.append(row)
    return out


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark's loader, the reward that judges it, and its evaluation defaults.

    reward: the reward whose full marks (>= 1) mean correct (`r1jax.rewards.judge`). k: samples
    per problem (R1-v2 Supp. D.1: 64 for AIME and GPQA, 16 for MATH; r1jax's choice where the
    paper has none). max_new_tokens: the paper's 32,768, lowered to fit the model's
    max_position at run time.
    """

    reward: str
    k: int
    parse: Callable[[list, str], list[dict]] | None = None  # rows, file name -> problems
    toy_task: str | None = None
    columns: str = ""  # for the missing-file message
    max_new_tokens: int = 32_768


TOY_COLUMNS = ("make_split rows: id, task, level, question, answer "
               "(r1jax.data.tfds_builder.build writes toy_world/<task>)")

BENCHMARKS = {
    "math500": Benchmark("accuracy", 16, math_problems,
                         columns="JSONL/parquet with problem, answer (HuggingFaceH4/MATH-500)"),
    "aime24": Benchmark("accuracy", 64, math_problems,
                        columns="parquet/JSONL with ID, Problem, Answer (Maxwell-Jia/AIME_2024)"),
    "aime25": Benchmark("accuracy", 64, math_problems,
                        columns="JSONL/parquet with question (or problem), answer "
                                "(opencompass/AIME2025)"),
    "gsm8k": Benchmark("accuracy", 4, gsm8k_problems,
                       columns="JSONL/parquet with question, answer ending '#### N' "
                               "(openai/gsm8k)"),
    "gpqa_diamond": Benchmark("choice", 64, gpqa_problems,
                              columns="CSV/parquet with Question, Correct Answer, Incorrect "
                                      "Answer 1-3 (Idavidrein/gpqa)"),
    "countdown": Benchmark("countdown", 4, countdown_problems,
                           columns="parquet/JSONL with nums, target (Jiayi-Pan/Countdown-Tasks-"
                                   "3to4) or TinyZero's reward_model.ground_truth"),
    **{f"toy_{task}": Benchmark(tasks.REWARDS[task], 16, toy_task=task, columns=TOY_COLUMNS,
                                max_new_tokens=256) for task in tasks.TASKS},
}


def _files(name: str, data_dir, path) -> list[Path]:
    bench = BENCHMARKS[name]
    if path is not None:
        candidates = [Path(path)]
    elif data_dir is None:
        raise ValueError(f"benchmark {name!r} reads local files: give a data directory "
                         f"(--data_dir or R1JAX_DATA_DIR) holding {name}.jsonl, .parquet or .csv "
                         f"({bench.columns})")
    else:
        candidates = [Path(data_dir) / f"{name}{s}" for s in SUFFIXES] + [Path(data_dir) / name]
    for candidate in candidates:
        if candidate.is_file():
            return [candidate]
        if candidate.is_dir():
            files = sorted(p for p in candidate.iterdir() if p.suffix in SUFFIXES)
            if files:
                return files
    raise FileNotFoundError(f"no data for benchmark {name!r}: looked for "
                            f"{', '.join(map(str, candidates))}; expected {bench.columns}")


def plain(value):
    """A tfds example's value as JSON would give it: str for bytes, lists for arrays."""
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def tfds_rows(wanted: str, columns: str, dataset: str, split: str, data_dir) -> list[dict]:
    """The rows of split `split` of tfds dataset `dataset` as plain dicts; a FileNotFoundError
    naming what `wanted` them ("benchmark 'gsm8k'") and the `columns` it reads when the dataset
    is not prepared in `data_dir`."""
    import tensorflow_datasets as tfds

    missing = (f"no data for {wanted}: no prepared tfds dataset {dataset!r} in "
               f"{data_dir or tfds.core.constants.DATA_DIR}; expected the columns of "
               f"{columns}, in array_record or parquet format")
    try:
        builder = tfds.builder(dataset, data_dir=None if data_dir is None else str(data_dir))
    except ValueError as e:  # tfds's DatasetNotFoundError, or a config it cannot construct
        raise FileNotFoundError(missing) from e
    if not builder.is_prepared():
        raise FileNotFoundError(missing)
    source = builder.as_data_source(split=split)
    return [{k: plain(v) for k, v in row.items()}
            for row in source.__getitems__(range(len(source)))]


def load(name: str, data_dir=None, *, path=None, n: int = 0, seed: int = 0,
         levels=tasks.LEVELS, languages=("en",)) -> list[dict]:
    """The problems of benchmark `name`: the first `n` (all when 0) of its source (`path`, a file,
    directory or "tfds:..." spec, or its file in `data_dir`), or for a toy benchmark without
    `path`, `n` (500 when 0) generated test problems of `levels`, posed in `languages` (see
    `tasks.make_split`; other sources are read in the language they are written in)."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    bench = BENCHMARKS[name]
    if bench.toy_task is not None and path is None:
        return tasks.make_split(bench.toy_task, "test", n or 500, seed, levels=tuple(levels),
                                languages=tuple(languages))
    parse = bench.parse or functools.partial(toy_problems, bench.toy_task, tuple(levels))
    if str(path).startswith(TFDS):
        dataset, _, split = str(path)[len(TFDS):].partition(":")
        split = split or "test"
        problems = parse(tfds_rows(f"benchmark {name!r}", bench.columns, dataset, split,
                                    data_dir), f"{TFDS}{dataset}:{split}")
    else:
        problems = []
        for file in _files(name, data_dir, path):
            problems += parse(read_records(file), str(file))
    if not problems:
        raise ValueError(f"benchmark {name!r}: its source holds no problems")
    return problems[:n] if n else problems
