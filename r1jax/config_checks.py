"""Values an experiment config can hold that no run can use, found before anything is loaded or
compiled: `check(config)` raises one ValueError naming every such key.

The rules go by key name wherever a key appears (a job's section, a pipeline stage's copy of
it), because the jobs share their names: ``steps`` counts steps in RL, SFT, pretraining and
reward-model training alike. What a job checks against data, the model or the mesh (the
tokenizer against the embedding, batches against the devices) it checks itself, also before
compiling.
"""

import math

# A count of things a run makes or holds: zero or less trains nothing, or divides by zero.
AT_LEAST_ONE = frozenset({
    "steps", "prompts_per_step", "batch_size", "microbatches", "num_minibatches",
    "max_new_tokens", "checkpoint_every", "reward_workers", "max_nonfinite_in_row",
    "samples_per_prompt", "prompts_per_batch", "samples_per_batch", "seq_len",
    "dynamic_sampling_max_batches", "ref_refresh_every", "samples_logged"})
# GRPO's advantage is a reward minus its group's mean: a group of one always has advantage 0.
AT_LEAST_TWO = frozenset({"group_size"})
# Seconds to wait: zero or less scores every completion 0 (a timeout).
POSITIVE = frozenset({"reward_timeout_s"})
# Never negative; zero is meaningful ("off", "none", greedy).
NOT_NEGATIVE = frozenset({"lr", "warmup_steps", "weight_decay", "kl_coef", "temperature",
                          "eval_every", "top_k", "overlong_cache_len", "logprob_chunk"})


# The jobs whose section counts training in passes over the data when its ``epochs`` > 0 (then
# ``steps`` is computed from the data, and its own value is not read); RL's ``epochs`` is GRPO's
# passes over one rollout instead.
COUNTS_EPOCHS = ("sft", "reward_model")


def counts_epochs(name: str, section) -> bool:
    """Whether key ``name``'s section is an SFT or reward-model section counting epochs."""
    epochs = section.get("epochs", 0)
    return name.split(".")[-2] in COUNTS_EPOCHS and isinstance(epochs, (int, float)) and epochs > 0


def problems(config, prefix: str = "config") -> list[str]:
    """One sentence for each value of ``config`` (a ConfigDict or mapping, nested) no run can
    use: counts below their minimum (``steps`` where `counts_epochs`), NaN or infinite numbers
    anywhere (a NaN reward weight makes every reward NaN), top_p outside (0, 1]."""
    found = []
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if hasattr(value, "items"):
            found += problems(value, name)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif not math.isfinite(value):
            found.append(f"{name} must be a finite number, got {value}")
        elif (key in AT_LEAST_ONE and value < 1
              and not (key == "steps" and counts_epochs(name, config))):
            found.append(f"{name} must be at least 1, got {value}")
        elif key in AT_LEAST_TWO and value < 2:
            found.append(f"{name} must be at least 2 (a group of one has advantage 0 and "
                         f"trains nothing), got {value}")
        elif key in POSITIVE and value <= 0:
            found.append(f"{name} must be more than 0, got {value}")
        elif key in NOT_NEGATIVE and value < 0:
            found.append(f"{name} must not be negative, got {value}")
        elif key == "top_p" and not 0 < value <= 1:
            found.append(f"{name} must be in (0, 1], got {value}")
    return found


def check(config) -> None:
    """ValueError naming every key of ``config`` that `problems` finds."""
    if found := problems(config):
        raise ValueError(f"the config cannot run: {'; '.join(found)}")
