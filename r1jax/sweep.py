"""Sweeps for notebooks: an RL experiment run once per named variant (config overrides), one
after another in this process, and their metrics and evaluations as pandas tables.

    from r1jax import plots, sweep
    from r1jax.main import load_experiment

    config = load_experiment("experiments/aha_tiny.py")
    result = sweep.run(config, {
        "accuracy_only": {"rewards": {"arithmetic": 1.0}},     # a section replaced whole
        "format_x2": {"rewards.format": 2.0},                   # one value set
        "dr_grpo": {"rl.aggregation": "seq_mean_token_sum_norm", "rl.normalize_std": False},
    }, workdir="runs/reward_ablation")
    result.metrics       # one row per (variant, step): variant, step, every logged metric
    result.evaluations   # one row per variant: its final evaluation, and base/... at step 0
    plots.compare(result, ["reward/total", "accuracy", "length/mean", "reflect/rate"])

Variant NAME runs as ``python -m r1jax.main`` runs its config with ``--workdir=WORKDIR/NAME``.
When the config has a ``pretrain`` section (the toy world), its base model is pretrained once
in ``WORKDIR/base`` (job "pretrain") from the sweep's config, and every variant is RL from that
checkpoint (``model.hf_path``), so a variant overriding what only the base is made of
(``pretrain``, ``corpus``, ``model``) is an error. A variant whose run finished is read, not
run again; one stopped midway resumes from its checkpoints; a folder holding a run of another
config is an error naming the keys that differ, so a stale run is never read as this one.
"""

import copy
import dataclasses
import json
import re
from collections.abc import Mapping

import ml_collections
import pandas
from etils import epath

from r1jax import cli, metrics, stages

BASE = "base"  # the shared base model's folder in the sweep's workdir
BASE_SECTIONS = ("model", "mesh", "data", "corpus", "pretrain")  # what the pretrain job reads
BASE_ONLY = ("pretrain", "corpus", "model")  # what a variant cannot change when the base is shared
BASE_EVALUATION = "base_evaluation.json"  # a variant's step-0 evaluation (rl.job writes it)
_ABSENT = object()  # a key one of two configs lacks
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclasses.dataclass
class SweepResult:
    """What `run` returns: ``metrics`` (pandas, one row per (variant, step): columns variant,
    step and every logged metric), ``evaluations`` (pandas, indexed by variant: the final
    evaluation summary, and the step-0 one under base/ where the run evaluates) and
    ``workdirs`` (variant -> its folder)."""
    metrics: pandas.DataFrame
    evaluations: pandas.DataFrame
    workdirs: dict


def overridden(config, name: str, overrides: Mapping):
    """A copy of ``config`` with variant ``name``'s ``overrides`` applied in order: a dotted key
    ("rl.lr") sets one value; one naming a section ("rewards") given a dict replaces the section
    whole, so that a term can be left out. A key the config does not have, or a value of another
    type than the key's, is an error naming the variant and the key."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        *parents, last = key.split(".")
        section = out
        for part in parents:
            section = section[part] if hasattr(section, "items") and part in section else None
        if not hasattr(section, "items") or last not in section:
            raise ValueError(f"variant {name!r}: the config has no key {key!r}")
        if hasattr(section[last], "items") and isinstance(value, Mapping):
            value = ml_collections.ConfigDict(dict(value))
        try:
            section[last] = value
        except TypeError as e:
            raise ValueError(f"variant {name!r}: {key!r} cannot be set to {value!r}: {e}") from None
    return out


def base_config(config):
    """The pretrain job of a sweep's shared base: the sections that job reads (`BASE_SECTIONS`),
    so that changing what only the RL runs read leaves the base's config.json as it was."""
    return ml_collections.ConfigDict(
        {"job": "pretrain", **{key: copy.deepcopy(config[key]) for key in BASE_SECTIONS
                               if key in config}})


def from_base(config, base):
    """``config`` as RL from the shared base's HF checkpoint at ``base``: model.hf_path set, no
    named model to check it against, no pretrain section."""
    out = copy.deepcopy(config)
    out.model.update(name="", hf_path=str(base))
    with out.unlocked():
        del out.pretrain
    return out


def variant_configs(config, variants: Mapping, base=None) -> dict:
    """Variant name -> the config its run has; with a shared ``base`` (its HF checkpoint), RL
    from it. Every name and key is checked before anything runs (errors name the variant)."""
    if config.job != "rl":
        raise ValueError(f"a sweep runs RL variants; config.job is {config.job!r}")
    if not (config.get("export") or config.rl.eval_every):
        raise ValueError("a sweep tells a finished run by what rl.job writes last, its export or "
                         "its final evaluation: set config.export or config.rl.eval_every")
    if not variants:
        raise ValueError("a sweep needs at least one variant")
    out = {}
    for name, overrides in variants.items():
        if not _FOLDER_NAME.fullmatch(name) or (base is not None and name == BASE):
            raise ValueError(f"variant name {name!r} is not a folder name a sweep can use "
                             f"(letters, digits, '_', '-', '.', not first; not {BASE!r}, the "
                             f"shared base model's folder)")
        if base is not None and (shared := [k for k in overrides
                                            if k.split(".")[0] in BASE_ONLY]):
            raise ValueError(f"variant {name!r} overrides {', '.join(shared)}, which only the "
                             f"shared base model reads: a sweep pretrains one base, from its "
                             f"config")
        variant = overridden(config, name, overrides)
        if unset := cli.unset_keys(variant):  # placeholders, as r1jax.main refuses them
            raise ValueError(f"variant {name!r}: the experiment needs {', '.join(unset)}")
        out[name] = from_base(variant, base) if base is not None else variant
    return out


def _as_json(config) -> dict:
    """A config as its run's config.json holds it (`r1jax.main.run_job` writes it)."""
    return json.loads(json.dumps(config.to_dict(), default=str))


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """"key (old value there, new value now)" for each dotted key whose value differs."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            there, now = ("absent" if v is _ABSENT else repr(v) for v in (a, b))
            out.append(f"{prefix}{key} ({there} there, {now} now)")
    return out


def check_folder(what: str, folder, config) -> None:
    """A folder that holds a run (its config.json) holds one of ``config``; otherwise an error
    naming ``what`` runs there (a variant, the shared base) and the keys that differ (reading it
    would pass a stale run off as this one)."""
    saved = epath.Path(folder) / "config.json"
    if not saved.exists():
        return
    if differ := _differences(json.loads(saved.read_text()), _as_json(config)):
        raise ValueError(f"sweep: {what} in {folder} is a run of another config: "
                         f"{'; '.join(differ)}. Delete the folder to run it again, or use "
                         f"another name or workdir")


def finished(config, folder) -> bool:
    """Whether the RL run in ``folder`` finished: what rl.job writes last is there, its export
    (``config.export``), else its final evaluation.json."""
    return (epath.Path(folder) / (config.get("export") or "evaluation.json")).exists()


def _read_json(path) -> dict:
    path = epath.Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def run(config, variants: Mapping, workdir: str) -> SweepResult:
    """Run (or read, or resume) each of ``variants`` (name -> overrides, see `overridden`) of
    the RL experiment ``config`` in ``workdir/<name>``, in order, after the shared base model
    when the config has a ``pretrain`` section (module docstring); their metrics and
    evaluations. A run stopped by SIGTERM (checkpointed) ends the sweep with an error: running
    it again resumes."""
    from r1jax import main

    workdir = epath.Path(workdir)
    base = None
    if "pretrain" in config:
        pretrain = base_config(config)
        base = stages.output_path(workdir, BASE, pretrain)
        check_folder("the shared base model", workdir / BASE, pretrain)
    configs = variant_configs(config, variants, base)
    for name, variant in configs.items():
        check_folder(f"variant {name!r}", workdir / name, variant)
    if base is not None and not base.exists():
        print(f"sweep: the shared base model in {workdir / BASE}")
        if not main.run_job(pretrain, str(workdir / BASE)):
            raise RuntimeError(f"sweep: pretraining the base in {workdir / BASE} stopped "
                               f"(SIGTERM, checkpointed); running the sweep again resumes it")
    rows, summaries = [], []
    for name, variant in configs.items():
        folder = workdir / name
        if finished(variant, folder):
            print(f"sweep: variant {name!r} is done ({folder})")
        else:
            print(f"sweep: variant {name!r} in {folder}")
            if not main.run_job(variant, str(folder)):
                raise RuntimeError(f"sweep: variant {name!r} stopped (SIGTERM, checkpointed in "
                                   f"{folder}); running the sweep again resumes it")
        rows += [{"variant": name, **step}
                 for step in metrics.read_metrics(folder / "metrics.jsonl")]
        summaries.append({**_read_json(folder / "evaluation.json"),
                          **{f"base/{k}": v for k, v in
                             _read_json(folder / BASE_EVALUATION).items()}})
    return SweepResult(
        metrics=pandas.DataFrame(rows),
        evaluations=pandas.DataFrame(summaries, index=pandas.Index(list(configs), name="variant")),
        workdirs={name: str(workdir / name) for name in configs})


def seconds_long(config):
    """aha_tiny's smoke ``config`` cut to a run of seconds, what the notebooks' SMOKE mode (and
    so CI) runs: a 100-step base, 4 RL steps of 8 prompts (a batch that splits over 1, 2 or 8
    devices), 8 test problems. Its numbers check the code, not a question."""
    config.pretrain.update(steps=100, checkpoint_every=100)
    config.rl.update(steps=4, prompts_per_step=8, checkpoint_every=2, eval_every=4,
                     warmup_steps=1)
    config.eval.update(n_problems=8)
    return config
