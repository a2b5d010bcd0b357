"""RL for all scenarios (R1 §2.3.4): general prompts join the reasoning ones in the last steps
of a run, and reward models, served on the device between steps, score them.

    config.rewards = {"arithmetic": 1.0, "summary_format": 1.0, "language": 1.0,
                      "helpfulness": 1.0, "harmlessness": 1.0}
    config.reward_models = {   # reward terms computed by a reward model (`r1jax.reward_model`)
        "helpfulness": {"path": "runs/r1/helpfulness_rm/hf", "on": "summary"},
        "harmlessness": {"path": "runs/r1/harmlessness_rm/hf", "on": "response"}}
    config.general = {
        "source": {"path": "general.jsonl", "format": "general",
                   "reward": ("helpfulness", "harmlessness"), "lang": "en"},
        "from_step": 60,        # the batch (0-based) from which general prompts are mixed in
        "prompts_per_step": 2}  # of each batch's rl.prompts_per_step

Who scores what: the rewards a prompt source names score only that source's prompts, so the
general prompts are scored by the reward models their source names and not by the rule rewards,
while the terms no source names (the formats, language consistency) score every prompt. With
general prompts in a run, a reasoning example that names no reward (the toy world's problems) is
scored as if it named ``rl.correctness_reward``, so the reward models leave it alone.

A reward model reads the prompt and, as R1's do, either the response's summary
(``"on": "summary"``, `templates.summary_part`: helpfulness) or the whole response with its
reasoning (``"on": "response"``: harmlessness), tokenized with its own tokenizer. Its term is
the model's score where it applies and NaN elsewhere, and adds ``weight x score`` to the total:
the same convention as a rule reward that a source scopes (`rewards.RewardScorer`).
"""

from __future__ import annotations

import time

import numpy as np

from r1jax import multihost, templates
from r1jax.data import prompts
from r1jax.rewards.registry import applies

ON = {"summary": templates.summary_part, "response": lambda completion: completion}
_LENGTH_BUCKET = 32  # token lengths are padded to a multiple of this: few compiled shapes


def model_specs(config) -> dict[str, dict]:
    """reward name -> {"path", "on"} of ``config.reward_models`` (none without the section),
    each checked: a weighted term of ``config.rewards``, read "on" the summary or response."""
    specs = {name: dict(spec) for name, spec in config.get("reward_models", {}).items()}
    for name, spec in specs.items():
        if name not in config.rewards:
            raise ValueError(f"reward model {name!r} ({spec.get('path')}) has no weight: add "
                             f"it to config.rewards ({', '.join(config.rewards)})")
        if set(spec) != {"path", "on"} or spec["on"] not in ON:
            raise ValueError(f"config.reward_models.{name} must be {{'path': <reward model "
                             f"checkpoint>, 'on': one of {sorted(ON)}}}, got {spec}")
    return specs


def rule_weights(config, specs: dict) -> dict[str, float]:
    """The terms of ``config.rewards`` that the reward pool computes: all but the models'."""
    return {name: float(w) for name, w in config.rewards.items() if name not in specs}


def scoped_rewards(config) -> frozenset:
    """The rewards that score only the prompts naming them (`rewards.RewardScorer`'s
    ``scoped``): the prompt sources', and with general prompts, theirs and the correctness
    reward (see the module docstring)."""
    scoped = prompts.source_rewards(config.data)
    if config.get("general"):
        scoped |= {*prompts.reward_names(config.general.source.reward),
                   config.rl.correctness_reward}
    return frozenset(scoped)


def tag_reasoning(config, examples: list[dict]) -> list[dict]:
    """Reasoning examples that name no reward name the correctness reward, when the run has
    general prompts (see the module docstring); unchanged otherwise."""
    if not config.get("general"):
        return examples
    return [{"reward": config.rl.correctness_reward, **example} for example in examples]


def general_batch_rows(config, mesh) -> int:
    """How many of this process's rows of each batch are general prompts once they start
    (``general.prompts_per_step``, split over processes like the batch); errors name the key."""
    general, c = config.general, config.rl
    if not 0 < general.prompts_per_step < c.prompts_per_step:
        raise ValueError(f"general.prompts_per_step={general.prompts_per_step} must be between "
                         f"1 and rl.prompts_per_step - 1 ({c.prompts_per_step - 1}): a batch "
                         f"keeps reasoning prompts")
    if not 0 <= general.from_step < c.steps:
        raise ValueError(f"general.from_step={general.from_step} must be a step of the run "
                         f"(0 .. rl.steps - 1 = {c.steps - 1})")
    _, blocks = multihost.row_block(mesh, c.prompts_per_step)
    if general.prompts_per_step % blocks:
        raise ValueError(f"general.prompts_per_step={general.prompts_per_step} does not split "
                         f"over the {blocks} processes that share each batch")
    return general.prompts_per_step // blocks


class WithGeneral:
    """Prompt batches of the ``reasoning`` iterator whose last ``count`` examples are, from its
    ``from_batch``-th batch (0-based) on, the next batch of the ``general`` iterator instead;
    an iterator with get_state/set_state (both iterators' and the count), so a resumed run sees
    the batches an uninterrupted one would. A replaced reasoning example is skipped, not kept
    for later."""

    def __init__(self, reasoning, general, from_batch: int, count: int):
        self.reasoning, self.general = reasoning, general
        self.from_batch, self.count, self.batches = from_batch, count, 0

    def __iter__(self):
        return self

    def __next__(self) -> list:
        batch = list(next(self.reasoning))
        if self.batches >= self.from_batch:
            batch = batch[:len(batch) - self.count] + list(next(self.general))
        self.batches += 1
        return batch

    def get_state(self) -> dict:
        return {"reasoning": self.reasoning.get_state(), "general": self.general.get_state(),
                "batches": self.batches}

    def set_state(self, state: dict) -> None:
        self.reasoning.set_state(state["reasoning"])
        self.general.set_state(state["general"])
        self.batches = state["batches"]


class RewardModel:
    """One reward model served on the mesh: its checkpoint, tokenizer and what it reads."""

    def __init__(self, name: str, spec: dict, mesh):
        from r1jax import policy, reward_model, tokenizers

        self.name, self.path, self.read = name, spec["path"], ON[spec["on"]]
        try:  # errors name the reward model and its checkpoint (or its tokenizer)
            self.cfg, self.params = reward_model.load(self.path, mesh=mesh)
            self.tokenizer = tokenizers.load_tokenizer(self.path)
            policy.check_tokenizer(self.cfg, self.tokenizer, self.path)
        except (OSError, ValueError) as e:
            raise ValueError(f"reward model {name!r} (config.reward_models.{name}): {e}") from None
        self.mesh = mesh

    def scores(self, texts: list[str], examples: list[dict], rows: np.ndarray) -> tuple:
        """(float64 [N] scores, NaN outside ``rows`` (bool [N]); rows cut to the model's
        positions) for this process's completions; called on every process together."""
        from r1jax import reward_model

        ids = [reward_model.encode(self.tokenizer, ex["prompt"], self.read(text)) if row
               else [self.tokenizer.pad_id]
               for text, ex, row in zip(texts, examples, rows, strict=True)]
        limit = self.cfg.max_position
        cut = sum(len(x) > limit for x in ids)
        ids = [x[-limit:] for x in ids]  # the response's end is kept: it ends the pass
        width = max(multihost.allgather(max(map(len, ids))))
        width = min(-(-width // _LENGTH_BUCKET) * _LENGTH_BUCKET, limit)
        tokens = np.full((len(ids), width), self.tokenizer.pad_id, np.int32)
        for i, x in enumerate(ids):
            tokens[i, :len(x)] = x
        lengths = np.array([len(x) for x in ids], np.int32)
        out = reward_model.scores(self.cfg, self.params,
                                  *multihost.put_rows(self.mesh, (tokens, lengths)))
        values = multihost.local_rows(out).astype(np.float64)
        return np.where(rows, values, np.nan), cut


class ModelScorer:
    """The reward pool's scorer with reward-model terms added: ``score`` returns what
    `rewards.RewardScorer.score` does, the models' terms (their weights x scores in the total
    where they apply) and per model reward/<name>_truncated and reward/<name>_s (seconds)."""

    def __init__(self, pool, models: list[RewardModel], weights: dict, scoped: frozenset):
        self.pool, self.models, self.weights, self.scoped = pool, models, weights, scoped

    def score(self, completions, examples):
        total, terms, stats = self.pool.score(completions, examples)
        for model in self.models:
            t0 = time.perf_counter()
            rows = np.array([applies(model.name, ex, self.scoped) for ex in examples], bool)
            if any(multihost.allgather(bool(rows.any()))):  # every process runs the pass
                values, cut = model.scores(list(completions), list(examples), rows)
            else:
                values, cut = np.full(len(examples), np.nan), 0
            terms[model.name] = values
            total = total + self.weights[model.name] * np.where(rows, values, 0.0)
            stats[f"reward/{model.name}_truncated"] = cut
            stats[f"reward/{model.name}_s"] = time.perf_counter() - t0
        return total, terms, stats
