"""Rejection sampling into an SFT set (R1 §2.3.3): sample several completions per prompt from
the reasoning-RL checkpoint, keep the correct ones that pass the filters, add non-reasoning data.

    python -m r1jax.main --config=experiments/X.py --workdir=DIR    # config.job = "rejection"

The `rejection` job samples ``config.rejection.samples_per_prompt`` completions of every prompt
of the RL stage's prompt data (``config.data``: its sources, else the toy world's train
problems; the first ``prompts`` of them) from ``config.model`` (an HF checkpoint at ``hf_path``,
such as an RL run's ``hf/``), judges them with the RL stage's rewards (``config.rewards``; a
sample is correct when the ``rl.correctness_reward`` term, or its prompt source's reward, is
> 0.5, as the RL metrics count accuracy), filters them (`select`) and writes, in DIR:

    samples/00000.jsonl ...  every sample of each chunk of ``prompts_per_batch`` prompts, kept or
                             not: prompt, completion, correct, reward, example, sample, length,
                             truncated. Chunk i is sampled with fold_in(key(seed), i), so a run
                             killed and restarted samples only the missing chunks and ends with
                             what an uninterrupted run writes.
    data.jsonl               the SFT set (`r1jax.data.records`): each kept sample as {"prompt",
                             "completion", "source": {"stage": "rejection", "checkpoint",
                             "example", "sample", "reward"}}, then the records of the
                             ``general_data`` files as they are, each with its "source" (its own,
                             else {"stage": "general", "file", "line"}). Written last: when it
                             exists the stage is done and a rerun skips it.
    report.json, report.md   prompts, samples, accuracy, how many samples each filter dropped,
                             kept samples, general records, the total, the mean length of kept
                             and of all samples, and the settings; the job prints report.md.

In a run over several processes each samples its rows of every chunk and `Collector.score`
gives every process the whole chunk; process 0 writes the files.

R1 keeps the correct completions and filters out chains of thought "with mixed languages, long
paragraphs, and code blocks" (and, for the cold start, repetition), about 600k reasoning
samples in all. Here each sample is a dict with its "prompt", "completion", "correct" (the
verdict of the reward the RL stage trained with) and "example" (its data row); `select` applies
the filters in `FILTERS` order and counts, for the report, how many samples each one dropped (a
sample is counted under the first filter that drops it):

    incorrect       the verifier said no
    truncated       the completion hit max_new_tokens before it stopped (SFT, which appends eos,
                    would teach the model to stop mid-thought)
    mixed_language  less than ``min_language_share`` of the reasoning's words are in the
                    example's language (only for examples that name one: "lang")
    repetition      more than ``max_repeated_ngrams`` of the reasoning's word n-grams repeat an
                    earlier one (a model stuck in a loop)
    long_paragraph  a paragraph (text between blank lines) longer than ``max_paragraph_words``
    code_block      a fenced code block (```) in a completion whose task is not code
    duplicate       the same prompt and completion (whitespace and case aside) as a kept sample

The thresholds are r1jax's: the paper names the filters, not their settings.
"""

import dataclasses
import json
import re
from collections import Counter

import jax
import ml_collections
import numpy as np
from etils import epath

from r1jax import multihost, optim, rollout
from r1jax.data import records
from r1jax.mesh import data_parallel_size
from r1jax.rewards.language import language_consistency, think_part

FILTERS = ("incorrect", "truncated", "mixed_language", "repetition", "long_paragraph",
           "code_block", "duplicate")


@dataclasses.dataclass(frozen=True)
class FilterSettings:
    min_language_share: float = 0.95
    ngram: int = 8  # words per n-gram of the repetition filter
    max_repeated_ngrams: float = 0.2
    max_paragraph_words: int = 300
    code_rewards: tuple[str, ...] = ("code",)  # examples judged by these may hold code blocks

    def __post_init__(self):
        if not (0 <= self.min_language_share <= 1 and 0 <= self.max_repeated_ngrams <= 1
                and self.ngram >= 1 and self.max_paragraph_words >= 1):
            raise ValueError(f"rejection filter settings out of range: {self}")


def repeated_ngrams(text: str, n: int) -> float:
    """The share of the text's word n-grams that repeat an earlier one (0 with fewer than n
    words)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def longest_paragraph(text: str) -> int:
    """Words in the text's longest paragraph (paragraphs are separated by blank lines)."""
    return max((len(p.split()) for p in re.split(r"\n\s*\n", text)), default=0)


def has_code_block(text: str) -> bool:
    return "```" in text


def _key(sample: dict) -> tuple[str, str]:
    return tuple(" ".join(sample[k].split()).casefold() for k in ("prompt", "completion"))


def rejection(sample: dict, settings: FilterSettings) -> str | None:
    """The first filter of `FILTERS` (but duplicate, which needs the other samples) that drops
    ``sample``, or None when it passes them all."""
    text, example = sample["completion"], sample["example"]
    reasoning = think_part(text)
    if not sample["correct"]:
        return "incorrect"
    if sample.get("truncated"):
        return "truncated"
    if example.get("lang") and (language_consistency([reasoning], example["lang"])[0]
                                < settings.min_language_share):
        return "mixed_language"
    if repeated_ngrams(reasoning, settings.ngram) > settings.max_repeated_ngrams:
        return "repetition"
    if longest_paragraph(text) > settings.max_paragraph_words:
        return "long_paragraph"
    if has_code_block(text) and example.get("reward") not in settings.code_rewards:
        return "code_block"
    return None


def select(samples, settings: FilterSettings = FilterSettings()) -> tuple[list[dict], dict]:
    """(the samples that pass every filter, in order; {filter: samples it dropped} for every
    filter of `FILTERS`)."""
    kept, seen, dropped = [], set(), Counter()
    for sample in samples:
        reason = rejection(sample, settings)
        if reason is None and _key(sample) in seen:
            reason = "duplicate"
        if reason is None:
            seen.add(_key(sample))
            kept.append(sample)
        else:
            dropped[reason] += 1
    return kept, {name: dropped[name] for name in FILTERS}


# --- The job ------------------------------------------------------------------------------------

_FILTER_KEYS = ("min_language_share", "ngram", "max_repeated_ngrams", "max_paragraph_words")


def default_config() -> ml_collections.ConfigDict:
    """Every key of ``config.rejection``; the filters' thresholds are `FilterSettings`'."""
    return ml_collections.ConfigDict(dict(
        samples_per_prompt=4,  # R1: "several"; at least 2 (rollout.RolloutSettings)
        prompts=0,  # the first this many examples of the prompt data; 0 = all
        prompts_per_batch=8,  # prompts per sampler call; splits over the data-parallel devices
        # T 1.0 and no top-p/top-k: the distribution the RL stage sampled and trained with
        # (rl.temperature), so the set holds the checkpoint's own reasoning and a prompt's
        # samples differ (at evaluation's T 0.6 more would be duplicates); the verifier and the
        # filters remove what the high temperature spoils. R1 gives no temperature for this
        # stage; it sampled its cold-start data from R1-Zero at T 1.0 (docs/recipe.md).
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_new_tokens=128,  # rl.default_config's; an experiment sets its RL stage's
        seed=0,
        **{key: getattr(FilterSettings(), key) for key in _FILTER_KEYS},
        general_data=(),  # JSONL files of non-reasoning SFT records {prompt, completion, ...}
    ))


def filter_settings(r) -> FilterSettings:
    """The filters' settings of the section ``config.rejection``."""
    return FilterSettings(**{key: r[key] for key in _FILTER_KEYS})


def rollout_settings(config) -> rollout.RolloutSettings:
    """The sampler's settings: ``config.rejection``'s, with the RL stage's stop strings and
    compute dtype (``config.rl``), so that completions end where the RL stage's did."""
    r = config.rejection
    return rollout.RolloutSettings(
        group_size=int(r.samples_per_prompt), prompts_per_step=int(r.prompts_per_batch),
        max_new_tokens=int(r.max_new_tokens), temperature=float(r.temperature),
        top_p=float(r.top_p), top_k=int(r.top_k), stop_strings=tuple(config.rl.stop_strings),
        dynamic_sampling_max_batches=1, compute_dtype=optim.compute_dtype(config.rl.compute_dtype))


def checkpoint_name(model) -> str:
    """What the samples came from, for their provenance: the HF checkpoint directory, else the
    named model (randomly initialised). A directory that does not exist is an error now, before
    anything is loaded."""
    if not model.get("hf_path"):
        return model.name
    if not epath.Path(model.hf_path).is_dir():
        raise FileNotFoundError(f"model.hf_path {model.hf_path} does not exist: it is the "
                                f"reasoning-RL checkpoint to sample from, which the RL stage "
                                f"writes (its workdir's hf/, or python -m r1jax.export)")
    return str(model.hf_path)


def general_records(paths) -> list[dict]:
    """The non-reasoning SFT records of the JSONL files ``paths``, as they are, each with its
    provenance: its own "source", else its file and line. A record without a prompt or
    completion is an error naming the file and line (`records.read_sft_records`)."""
    out = []
    for path in paths:
        checked = records.read_sft_records(str(path))
        lines = [number for number, _ in records.read_jsonl(path)]
        out += [{**record, "source": record.get("source") or
                 {"stage": "general", "file": str(path), "line": line}}
                for line, record in zip(lines, checked, strict=True)]
    return out


def chunk_file(workdir, index: int) -> epath.Path:
    """Where chunk ``index``'s raw samples are."""
    return epath.Path(workdir) / "samples" / f"{index:05d}.jsonl"


def sample_records(ro: rollout.Rollout, prompts: int, group_size: int,
                   correctness_reward: str) -> list[dict]:
    """The samples of a chunk's first ``prompts`` prompts (the rest is padding) as raw sample
    records, every one, correct or not, as `select` reads them. A reward that could not be
    scored is null, as in metrics.jsonl."""
    correct = rollout.correct(ro, correctness_reward)
    return [{"prompt": ro.examples[i]["prompt"], "completion": ro.texts[i],
             "correct": bool(correct[i]),
             "reward": float(ro.rewards[i]) if np.isfinite(ro.rewards[i]) else None,
             "example": {k: v for k, v in ro.examples[i].items() if k != "prompt"},
             "sample": i % group_size, "length": int(ro.lengths[i]),
             "truncated": bool(ro.truncated[i])}
            for i in range(prompts * group_size)]


def sample_chunks(collector: rollout.Collector, params, chunks: list[list[dict]], todo: list[int],
                  workdir, seed: int, correctness_reward: str) -> None:
    """Sample and score the chunks ``todo`` and write each one's samples (process 0). Chunk i is
    sampled with fold_in(key(seed), i), whichever chunks a run has left to do; a short last
    chunk is padded with its own prompts, whose samples are dropped, so every call has one
    shape. Each process samples its rows of the chunk."""
    size, group_size = collector.settings.prompts_per_step, collector.settings.group_size
    rows = multihost.row_slice(collector.mesh, size)
    for i in todo:
        padded = (chunks[i] * size)[:size]
        sampled = collector.sample(params, padded[rows], jax.random.fold_in(
            jax.random.key(seed), i))
        samples = sample_records(collector.score(sampled), len(chunks[i]), group_size,
                                 correctness_reward)
        if multihost.is_primary():
            records.write_jsonl(chunk_file(workdir, i), samples)
            print(f"rejection: chunk {i + 1} of {len(chunks)} sampled, "
                  f"{sum(s['correct'] for s in samples)} of {len(samples)} samples correct")


def sft_record(sample: dict, checkpoint: str) -> dict:
    """A kept sample as an SFT record with its provenance."""
    return {"prompt": sample["prompt"], "completion": sample["completion"],
            "source": {"stage": "rejection", "checkpoint": checkpoint,
                       "example": sample["example"]["id"], "sample": sample["sample"],
                       "reward": sample["reward"]}}


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def report(prompts: int, samples: list[dict], kept: list[dict], dropped: dict, general: int,
           settings: dict) -> dict:
    """The numbers of report.json: every sample is kept or counted under one filter."""
    correct = sum(s["correct"] for s in samples)
    return {"prompts": prompts, "samples": len(samples), "correct": correct,
            "accuracy": correct / len(samples), "dropped": dropped, "kept": len(kept),
            "general": general, "total": len(kept) + general,
            "mean_length": {"all": _mean([s["length"] for s in samples]),
                            "kept": _mean([s["length"] for s in kept])},
            "settings": settings}


def markdown(rep: dict) -> str:
    """report.md: the report as a table, then the settings."""
    def number(value):
        return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else value
    rows = [("prompts", rep["prompts"]), ("samples", rep["samples"]),
            ("correct samples", f"{rep['correct']} (accuracy {rep['accuracy']:.3f})"),
            *((f"dropped: {name}", count) for name, count in rep["dropped"].items()),
            ("kept reasoning samples", rep["kept"]), ("general records", rep["general"]),
            ("SFT records in data.jsonl", rep["total"]),
            ("mean length of all samples (tokens)", number(rep["mean_length"]["all"])),
            ("mean length of kept samples (tokens)", number(rep["mean_length"]["kept"]))]
    settings = [f"- {key}: `{json.dumps(value)}`" for key, value in rep["settings"].items()]
    return "\n".join(["# Rejection sampling", "", "| | |", "|---|---:|",
                      *(f"| {name} | {value} |" for name, value in rows),
                      "", "Settings:", "", *settings, ""])


def write_outputs(workdir, prompts: int, chunks: int, filters: FilterSettings, checkpoint: str,
                  general: list[dict], settings: dict) -> str:
    """data.jsonl, report.json and report.md from the samples of every chunk, in order; returns
    report.md. data.jsonl goes last: it marks the stage done."""
    out = epath.Path(workdir)
    samples = [sample for i in range(chunks)
               for _, sample in records.read_jsonl(chunk_file(out, i))]
    kept, dropped = select(samples, filters)
    rep = report(prompts, samples, kept, dropped, len(general), settings)
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    (out / "report.md").write_text(markdown(rep))
    records.write_jsonl(out / "data.jsonl", [sft_record(s, checkpoint) for s in kept] + general)
    return markdown(rep)


def job(config, workdir: str) -> bool:
    """The `rejection` job (see the module docstring); skipped when workdir/data.jsonl exists.
    Returns True (it has no SIGTERM checkpoint: a killed run resumes from its chunk files)."""
    from r1jax import policy, rewards, toy
    from r1jax.data import prompts
    from r1jax.mesh import mesh_from_config

    r, out = config.rejection, epath.Path(workdir)
    if (out / "data.jsonl").exists():
        print(f"rejection: {out / 'data.jsonl'} exists, so this stage is done (skipped)")
        return True
    # Everything that can be checked is, before a model is loaded or compiled: the checkpoint,
    # the general data, the settings, the tokenizer, every prompt and the fields its rewards read.
    checkpoint = checkpoint_name(config.model)
    general = general_records(r.general_data)
    filters, sampler = filter_settings(r), rollout_settings(config)
    cfg = policy.model_config(config.model)
    tokenizer, _ = toy.job_tokenizer(config, workdir, cfg)
    prompts.check_room(config, cfg.max_position, "rejection.max_new_tokens")
    examples = prompts.prompt_examples(config, lambda prompt: len(tokenizer.encode(prompt)))
    examples = examples[:r.prompts or None]
    scoped = prompts.source_rewards(config.data)
    rewards.check_fields(dict(config.rewards), examples, scoped)
    correctness = config.rl.correctness_reward
    if correctness not in config.rewards and any("reward" not in ex for ex in examples):
        raise ValueError(f"rl.correctness_reward {correctness!r}, which judges the samples, is "
                         f"not in config.rewards ({', '.join(config.rewards)})")
    mesh = mesh_from_config(config.mesh)
    if r.prompts_per_batch % data_parallel_size(mesh):
        raise ValueError(f"rejection.prompts_per_batch={r.prompts_per_batch} does not split over "
                         f"the mesh's {data_parallel_size(mesh)} data-parallel devices")
    size = r.prompts_per_batch
    chunks = [examples[i:i + size] for i in range(0, len(examples), size)]
    # Process 0's view of what is done, so that every process samples the same chunks.
    todo = multihost.allgather([i for i in range(len(chunks))
                                if not chunk_file(workdir, i).exists()])[0]
    print(f"rejection: {len(examples)} prompts x {r.samples_per_prompt} samples from "
          f"{checkpoint}, in {len(chunks)} chunks ({len(chunks) - len(todo)} done before)")
    if todo:
        cfg, params = policy.load_policy(config.model, mesh=mesh)
        with rewards.RewardScorer(dict(config.rewards), config.reward_workers,
                                  config.reward_timeout_s, scoped) as scorer:
            collector = rollout.Collector(sampler, cfg, tokenizer, scorer, mesh)
            sample_chunks(collector, params, chunks, todo, workdir, r.seed, correctness)
    if multihost.is_primary():
        settings = {"checkpoint": checkpoint, **r.to_dict(), "correctness_reward": correctness,
                    "stop_strings": list(config.rl.stop_strings), "rewards": dict(config.rewards)}
        print(write_outputs(workdir, len(examples), len(chunks), filters, checkpoint, general,
                            settings))
    multihost.sync("rejection data")
    return True
