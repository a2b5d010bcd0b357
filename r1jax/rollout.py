"""One rollout of the RL loop: sample G completions per prompt, decode and score them, and with
DAPO's dynamic sampling keep only groups whose rewards differ.

    collector = Collector(settings, cfg, tokenizer, scorer, mesh)
    sampled = collector.sample(params, examples, rng)   # dispatched; runs on the device
    ro = collector.score(sampled)                        # host: fetch, decode, score
    ro, batches = collector.fill_informative(ro, lambda i: collector.score(...))

A `Rollout` holds host arrays whose rows b*G .. b*G+G-1 are prompt b's completions; `concat`
and `take` work row-wise over its fields, so a new per-row field needs no code of its own.
"""

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from r1jax import metrics, multihost, optim, sampling, stopping

_SUMMED = {"per_row": False}  # a field of counts over the whole rollout, not one value per row


def _left_padded(fill):
    return {"left_pad": fill}  # a [rows, width] field whose width may differ between rollouts


@dataclasses.dataclass
class Rollout:
    """B*G scored completions (host arrays), rows b*G .. b*G+G-1 from prompt b."""

    examples: list  # B*G example dicts (each prompt's repeated G times)
    prompts: np.ndarray = dataclasses.field(metadata=_left_padded(0))  # int32 [B*G, P]
    prompt_mask: np.ndarray = dataclasses.field(metadata=_left_padded(False))  # bool [B*G, P]
    tokens: np.ndarray  # int32 [B*G, N]
    mask: np.ndarray  # bool [B*G, N], generated tokens (the stop token included)
    logprobs: np.ndarray  # float32 [B*G, N], the sampler's (the old policy's)
    lengths: np.ndarray  # int32 [B*G]
    truncated: np.ndarray  # bool [B*G]: hit max_new_tokens without a stop token
    texts: list  # B*G decoded completions
    rewards: np.ndarray  # float64 [B*G], the weighted sum; NaN where unscorable
    terms: dict  # reward name -> float64 [B*G]
    reward_stats: dict = dataclasses.field(metadata=_SUMMED)  # error/timeout counts, seconds


def _rows(value: Any, rows) -> Any:
    if isinstance(value, dict):
        return {k: _rows(v, rows) for k, v in value.items()}
    if isinstance(value, list):
        return [value[i] for i in rows]
    return value[rows]


def _stack(values: list, left_pad=None) -> Any:
    if isinstance(values[0], dict):
        return {k: _stack([v[k] for v in values], left_pad) for k in values[0]}
    if isinstance(values[0], list):
        return [x for v in values for x in v]
    if left_pad is not None:  # the padding is masked out of attention, so any fill serves
        width = max(v.shape[1] for v in values)
        values = [np.pad(v, ((0, 0), (width - v.shape[1], 0)), constant_values=left_pad)
                  for v in values]
    return np.concatenate(values)


def concat(rollouts: list[Rollout]) -> Rollout:
    """Rollouts stacked row-wise (prompts re-padded on the left to the widest); counts added."""
    fields = {}
    for f in dataclasses.fields(Rollout):
        values = [getattr(r, f.name) for r in rollouts]
        if f.metadata.get("per_row", True):
            fields[f.name] = _stack(values, f.metadata.get("left_pad"))
        else:
            fields[f.name] = {k: sum(v[k] for v in values) for k in values[0]}
    return Rollout(**fields)


def take(ro: Rollout, rows) -> Rollout:
    """The rollout's rows ``rows``; whole-rollout counts are kept as they are."""
    return Rollout(**{f.name: _rows(getattr(ro, f.name), rows)
                      if f.metadata.get("per_row", True) else getattr(ro, f.name)
                      for f in dataclasses.fields(Rollout)})


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    group_size: int  # G
    prompts_per_step: int  # B
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop_strings: tuple[str, ...]  # besides eos: a completion ends once its text contains one
    dynamic_sampling_max_batches: int  # batches sampled at most to fill B informative groups
    compute_dtype: str = "float32"  # of the sampler's forward passes (float32 logits always)

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a group of one has advantage 0), "
                             f"got {self.group_size}")
        if self.prompts_per_step < 1 or self.dynamic_sampling_max_batches < 1:
            raise ValueError(f"prompts_per_step and dynamic_sampling_max_batches must be at least "
                             f"1, got {self.prompts_per_step}, {self.dynamic_sampling_max_batches}")

    @classmethod
    def from_config(cls, c) -> "RolloutSettings":
        return cls(int(c.group_size), int(c.prompts_per_step), int(c.max_new_tokens),
                   float(c.temperature), float(c.top_p), int(c.top_k), tuple(c.stop_strings),
                   int(c.dynamic_sampling_max_batches), optim.compute_dtype(c.compute_dtype))


class Sampled(NamedTuple):
    examples: list  # the B examples
    out: sampling.SampleOutput  # device arrays, still being computed


class Collector:
    """Samples, decodes and scores rollouts for one run (its tokenizer, scorer and mesh)."""

    def __init__(self, settings: RolloutSettings, cfg, tokenizer, scorer, mesh):
        self.settings, self.cfg, self.tokenizer, self.scorer, self.mesh = (
            settings, cfg, tokenizer, scorer, mesh)
        self.stop = stopping.stop_condition(tokenizer, settings.stop_strings)

    def sample(self, params, examples: list, rng) -> Sampled:
        """Dispatch sampling for B examples, this process's rows of them (`multihost.row_slice`;
        all of them in a single-process run); JAX runs it asynchronously."""
        s = self.settings
        rows = multihost.row_slice(self.mesh, s.prompts_per_step)
        if len(examples) != rows.stop - rows.start:
            raise ValueError(f"the data gave a batch of {len(examples)} examples; this process's "
                             f"share of prompts_per_step={s.prompts_per_step} is "
                             f"{rows.stop - rows.start}")
        prompts = [self.tokenizer.encode(ex["prompt"]) for ex in examples]
        return Sampled(examples, sampling.generate(
            self.cfg, optim.cast_floating(params, s.compute_dtype), prompts, rng,
            num_samples=s.group_size,
            max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
            top_k=s.top_k, stop=self.stop, pad_id=self.tokenizer.pad_id,
            mesh=self.mesh))

    def score(self, sampled: Sampled) -> Rollout:
        """Fetch this process's rows of a sampled batch to the host, decode and score them; the
        rollout of every process's rows, the same on each (reward counts summed over them)."""
        G, out = self.settings.group_size, multihost.local_rows(sampled.out)
        texts = [self.tokenizer.decode(row[:n]) for row, n in zip(out.tokens, out.lengths)]
        examples = [ex for ex in sampled.examples for _ in range(G)]
        rewards, terms, stats = self.scorer.score(texts, examples)
        local = Rollout(examples, np.repeat(out.prompts, G, 0), np.repeat(out.prompt_mask, G, 0),
                        out.tokens, out.mask, out.logprobs, out.lengths, out.truncated, texts,
                        rewards, terms, stats)
        parts = multihost.gather_blocks(self.mesh, self.settings.prompts_per_step * G, local)
        return parts[0] if len(parts) == 1 else concat(parts)

    def fill_informative(self, ro: Rollout, sample_more) -> tuple[Rollout, int]:
        """DAPO dynamic sampling: the rollout cut to B groups whose rewards are not all equal.

        ``sample_more(i)`` samples and scores the i-th extra batch; extra batches are drawn until
        B informative groups exist or ``dynamic_sampling_max_batches`` batches were sampled in
        all. If too few are found, groups with equal rewards fill the batch (they get advantage
        0), so the update keeps its shape. Returns (rollout, batches sampled).
        """
        s, G = self.settings, self.settings.group_size
        rollouts = [ro]
        while (sum(informative_groups(r, G).sum() for r in rollouts) < s.prompts_per_step
               and len(rollouts) < s.dynamic_sampling_max_batches):
            rollouts.append(sample_more(len(rollouts)))
        merged = concat(rollouts)
        flags = informative_groups(merged, G)
        order = np.concatenate([np.flatnonzero(flags), np.flatnonzero(~flags)])
        groups = np.sort(order[:s.prompts_per_step])
        return take(merged, (groups[:, None] * G + np.arange(G)).ravel()), len(rollouts)


def informative_groups(ro: Rollout, group_size: int) -> np.ndarray:
    """bool [groups]: the group's finite rewards are not all equal (its advantages are not 0)."""
    groups = np.where(np.isfinite(ro.rewards), ro.rewards, np.nan).reshape(-1, group_size)
    with np.errstate(all="ignore"):
        return np.nan_to_num(np.nanmax(groups, 1) - np.nanmin(groups, 1)) > 0


def judged(ro: Rollout) -> np.ndarray:
    """bool [B*G]: rows of reasoning prompts, which a correctness reward judges; not those of
    general prompts, which name several rewards (reward models: `r1jax.scenarios`)."""
    return np.array([isinstance(ex.get("reward", ""), str) for ex in ro.examples], bool)


def correct(ro: Rollout, correctness_reward: str) -> np.ndarray:
    """bool [B*G]: whether each completion is correct, the verdict the RL stage counts as
    accuracy and rejection sampling keeps: its example's reward term (a prompt source's) > 0.5,
    else ``correctness_reward``'s (the total reward where that is no term); NaN is not correct,
    and a general prompt's completion (not `judged`) is not either."""
    return np.array([isinstance(name := ex.get("reward", correctness_reward), str)
                     and np.nan_to_num(ro.terms.get(name, ro.rewards)[i]) > 0.5
                     for i, ex in enumerate(ro.examples)], bool)


def rollout_metrics(ro: Rollout, group_size: int, correctness_reward: str) -> dict:
    """The per-step metrics of one rollout: rewards by term, reward errors and time, the
    zero-variance fraction, and accuracy, length and reflective-word statistics."""
    finite = np.isfinite(ro.rewards)
    out = {"reward/total": float(np.nanmean(ro.rewards)) if finite.any() else 0.0,
           "reward/unscorable_frac": float(np.mean(~finite)),
           "adv/zero_std_frac": float((~informative_groups(ro, group_size)).mean())}
    for name, values in ro.terms.items():
        out[f"reward/{name}"] = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    for key, value in ro.reward_stats.items():  # wall-clock figures go with the other timings
        out[key.replace("reward/", "time/reward_") if key.endswith("_s") else key] = float(value)
    # The format the run rewards: R1's readable one, else R1-Zero's (none: every completion).
    formatted = next((ro.terms[name] >= 1.0 for name in ("summary_format", "format")
                      if name in ro.terms), np.ones(len(ro.texts), bool))
    rows = judged(ro)  # accuracy, length and reflection: of the reasoning prompts' responses
    out.update(metrics.rollout_stats([t for t, r in zip(ro.texts, rows) if r], ro.lengths[rows],
                                     correct(ro, correctness_reward)[rows], ro.truncated[rows],
                                     formatted[rows]))
    return out
