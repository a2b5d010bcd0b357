"""JSONL datasets that stages of the R1 pipeline pass to each other: one record per line, each
with its provenance, written so that a person can open, filter and reuse them.

An SFT record is the exact text the model sees and the text it learns to write, plus where it
came from:

    {"prompt": "A conversation between User and Assistant. ... Assistant:",
     "completion": " <think> 3 + 7 = 10. ... </think> <answer> 12 </answer>",
     "source": {"stage": "rejection", "checkpoint": "runs/r1/reasoning_rl/hf",
                "example": "sums/train/0/17", "sample": 3, "reward": 2.0}}

    records = read_sft_records(["runs/r1/rejection/data.jsonl", "general.jsonl"])
    write_jsonl("out/data.jsonl", records)     # whole or not at all

Paths may be local or cloud (``gs://...``, through etils.epath).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from etils import epath

SFT_FIELDS = ("prompt", "completion")


def read_jsonl(path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a JSONL file; a line that is not a JSON
    object is a ValueError naming the file and line."""
    path = epath.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    records = []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not JSON ({e})") from e
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: a JSON {type(record).__name__}, not an "
                             f"object with fields")
        records.append((number, record))
    return records


def read_sft_records(paths: str | Sequence[str]) -> list[dict]:
    """The records of one or several JSONL files, in order, each with a non-empty string
    "prompt" and "completion" (a ValueError names the file, line and field otherwise)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError("no SFT data files given")
    out = []
    for path in paths:
        for number, record in read_jsonl(path):
            for name in SFT_FIELDS:
                if not isinstance(record.get(name), str) or not record[name]:
                    raise ValueError(f"{path}, line {number}: field {name!r} must be a "
                                     f"non-empty string, got {record.get(name)!r}")
            out.append(record)
    if not out:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    return out


def write_jsonl(path, records: Iterable[dict]) -> int:
    """Writes ``records`` to ``path`` as JSONL (through ``<path>.partial``, renamed when
    complete, so a reader never sees half a file); returns how many were written."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    partial = path.parent / (path.name + ".partial")
    partial.write_text("".join(lines))
    partial.rename(path)
    return len(lines)
