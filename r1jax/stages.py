"""The `pipeline` job: stages of the R1 recipe run in order, each a job of its own in its own
folder, passing artifacts a person can open (HF checkpoints, JSONL datasets).

    config.job = "pipeline"
    config.stages = {"base": <an experiment config whose job is "pretrain">,
                     "cold_start": <job "sft", sft.data = ("stage:cold_start_data",)>, ...}
    config.order = ("base", "cold_start_data", "cold_start", ...)   # every stage, once

    python -m r1jax.main --config=experiments/r1_pipeline_tiny.py --workdir=runs/r1_tiny

Stage NAME runs as ``python -m r1jax.main`` would run its config with ``--workdir=DIR/NAME``
(config.json, checkpoints, metrics and its output there). A string "stage:NAME" anywhere in a
later stage's config is the output of stage NAME (`output_path`): an HF checkpoint for the
training jobs, data.jsonl for the data jobs; "stage:NAME/PATH" is a file of its folder (the toy
world's tokenizer: "stage:base/tokenizer.model"); "path:NAME" is ``config.paths.NAME``, a path
the user gives once for every stage that reads it. A reference to a stage that is not an earlier
one is an error before anything runs; an output that is missing when its reader starts names the
stage that makes it.

A stage whose output exists is skipped, so a rerun of the command resumes the pipeline where it
stopped (a stage stopped by SIGTERM resumes from its own checkpoint). Every stage that makes a
model is evaluated with the pipeline's ``eval`` section, the same problems and protocol for all
(``NAME/evaluation.json``; the training jobs write it themselves), and the pipeline ends with
``results.md``: one row per stage.
"""

import copy
import json

from etils import epath

from r1jax import metrics

PREFIX = "stage:"
USER_PREFIX = "path:"  # a path the user gives once in config.paths, which several stages read

# What each job makes: a path in its folder, or, for the training jobs, where config.export says.
OUTPUTS = {"pretrain": "base", "cold_start_data": "data.jsonl", "rejection": "data.jsonl",
           "general_data": "prompts.jsonl"}
EXPORTED = ("sft", "rl", "reward_model")  # jobs whose output is their config.export (HF)
POLICIES = ("pretrain", "sft", "rl")  # jobs that make a policy, which the pipeline evaluates
# The columns of results.md: (header, key of the evaluation summary, format).
COLUMNS = (("test pass@1", "eval/pass@1", "{:.3f}"), ("cons@k", "eval/cons@k", "{:.3f}"),
           ("language consistency", "eval/language/consistency", "{:.3f}"),
           ("response length", "eval/length/mean", "{:.1f}"),
           ("summary format", "eval/summary_format_frac", "{:.3f}"),
           ("R1-Zero format", "eval/format_frac", "{:.3f}"),
           ("training tokens", "train/tokens", "{:,.0f}"))


def output_path(workdir, name: str, stage) -> epath.Path:
    """Where stage ``name`` (config ``stage``) of a pipeline in ``workdir`` writes its output."""
    folder = epath.Path(workdir) / name
    if stage.job in EXPORTED:
        if not stage.get("export"):
            raise ValueError(f"stage {name!r} (job {stage.job}) has no export: later stages read "
                             f"its model from the HF checkpoint it exports")
        return folder / stage.export
    if stage.job not in OUTPUTS:
        raise ValueError(f"stage {name!r}: job {stage.job!r} has no output a pipeline knows "
                         f"(jobs with one: {', '.join([*OUTPUTS, *EXPORTED])})")
    return folder / OUTPUTS[stage.job]


def _references(value, prefix: str = PREFIX):
    """The strings starting with ``prefix`` in a config value (nested sections, tuples, lists)."""
    if isinstance(value, str):
        return [value] if value.startswith(prefix) else []
    if hasattr(value, "items"):
        return [ref for v in value.values() for ref in _references(v, prefix)]
    if isinstance(value, (tuple, list)):
        return [ref for v in value for ref in _references(v, prefix)]
    return []


def _resolve(value, paths: dict):
    """``value`` with every "stage:NAME[/PATH]" replaced by that stage's output (or file) and
    every "path:NAME" by the user's path (``paths``: stage name -> (output, folder), and
    "path:NAME" -> the path)."""
    if isinstance(value, str) and value.startswith(PREFIX):
        name, _, rest = value[len(PREFIX):].partition("/")
        return str(paths[name][1] / rest if rest else paths[name][0])
    if isinstance(value, str) and value.startswith(USER_PREFIX):
        return str(paths[value])
    if isinstance(value, (tuple, list)):
        return type(value)(_resolve(v, paths) for v in value)
    return value


def resolved(stage, paths: dict):
    """A copy of a config with its references resolved (see `_resolve`)."""
    out = copy.deepcopy(stage)
    for key, value in stage.items():
        out[key] = resolved(value, paths) if hasattr(value, "items") else _resolve(value, paths)
    return out


def user_paths(config) -> dict:
    """"path:NAME" -> ``config.paths.NAME`` for each path the user gives; a "path:NAME" that
    config.paths lacks is an error naming it."""
    given = {f"{USER_PREFIX}{name}": value for name, value in config.get("paths", {}).items()}
    for ref in _references(config, USER_PREFIX):
        if ref not in given:
            raise ValueError(f"the pipeline reads {ref!r}, but config.paths has no "
                             f"{ref[len(USER_PREFIX):]!r} (it has {sorted(given)})")
    return given


def ordered(config) -> list:
    """(name, stage config) in ``config.order`` (a ConfigDict's own order is alphabetical),
    which must list every stage of ``config.stages`` once; each reads only earlier stages'
    outputs (`check_references`). Errors name what is wrong before any stage runs."""
    order, names = list(config.order), set(config.stages.keys())
    if len(set(order)) != len(order) or set(order) != names:
        raise ValueError(f"pipeline order {order} must list each stage of config.stages once: "
                         f"missing {sorted(names - set(order))}, unknown "
                         f"{sorted(set(order) - names)}")
    stages = [(name, config.stages[name]) for name in order]
    check_references(stages)
    return stages


def check_references(stages) -> None:
    """Every "stage:NAME" in the (name, config) ``stages`` names an earlier stage; otherwise an
    error naming both."""
    earlier, names = [], {name for name, _ in stages}
    for name, stage in stages:
        for ref in _references(stage):
            target = ref[len(PREFIX):].partition("/")[0]
            if target not in earlier:
                where = "a later stage" if target in names else "no stage"
                raise ValueError(f"stage {name!r} reads {ref!r}, but {target!r} is {where}; a "
                                 f"stage reads only the outputs of stages before it "
                                 f"({', '.join(earlier) or 'none'})")
        earlier.append(name)


def _check_inputs(name: str, stage, paths: dict) -> None:
    """The outputs a stage reads exist; else an error naming the stage that makes each."""
    for ref in _references(stage):
        target = ref[len(PREFIX):].partition("/")[0]
        path = epath.Path(_resolve(ref, paths))
        if not path.exists():
            raise FileNotFoundError(f"stage {name!r} reads {ref} ({path}), which stage "
                                    f"{target!r} makes and is not there: rerun the pipeline so "
                                    f"that {target!r} runs again (delete its folder if it "
                                    f"finished without it)")


def evaluation(config, workdir, name: str, model_path) -> dict:
    """The stage's evaluation summary: its ``evaluation.json`` (the training jobs write one),
    else ``model_path`` evaluated now with the pipeline's ``eval`` section and saved there."""
    from r1jax import evaluate, multihost, policy, tokenizers
    from r1jax.mesh import mesh_from_config

    saved = epath.Path(workdir) / name / "evaluation.json"
    if saved.exists():
        return json.loads(saved.read_text())
    mesh = mesh_from_config(config.mesh)
    tokenizer = tokenizers.load_tokenizer(str(model_path))  # HF checkpoints hold theirs
    cfg, params = policy.load_policy(str(model_path), mesh=mesh)
    summary = evaluate.hook_from_config(config, cfg, tokenizer, mesh)(0, params)
    if multihost.is_primary():
        saved.write_text(json.dumps(summary, indent=2))
    return summary


def training_tokens(folder, job: str) -> dict:
    """{"train/tokens": the tokens a stage's losses were taken over} (completion targets for
    SFT, every target for pretraining, sampled tokens for RL: each step's logged "tokens"),
    from its metrics.jsonl; {} without one that logs them. What compares distillation with RL at
    equal training (R1 Table 6)."""
    path = epath.Path(folder) / ("pretrain" if job == "pretrain" else "") / "metrics.jsonl"
    steps = metrics.read_metrics(path) if path.exists() else []
    if not any("tokens" in step for step in steps):  # no log, or one from before the key
        return {}
    return {"train/tokens": sum(step.get("tokens", 0.0) for step in steps)}


def results_table(rows: dict) -> str:
    """results.md: a row per evaluated stage, the `COLUMNS` of its evaluation."""
    def cell(summary, key, form):
        return form.format(summary[key]) if key in summary else "-"
    lines = ["| stage | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(cell(s, k, f) for _, k, f in COLUMNS) + " |"
              for name, s in rows.items()]
    return "\n".join(lines) + "\n"


def job(config, workdir: str) -> bool:
    """Run (or resume) the stages of ``config.stages`` in ``config.order`` (see the module
    docstring); whether all finished (False: one was stopped by SIGTERM, checkpointed)."""
    from r1jax import main, multihost

    paths, rows = user_paths(config), {}
    stages = ordered(config)
    shared = copy.deepcopy(config)  # what the pipeline's own evaluations read
    with shared.unlocked():  # the command line locks the config
        del shared.stages
    shared = resolved(shared, paths)
    for name, stage in stages:
        folder = epath.Path(workdir) / name
        paths[name] = (output_path(workdir, name, stage), folder)
        if paths[name][0].exists():
            print(f"pipeline: stage {name!r} is done ({paths[name][0]})")
        else:
            _check_inputs(name, stage, paths)
            print(f"pipeline: stage {name!r} (job {stage.job}) in {folder}")
            if not main.run_job(resolved(stage, paths), str(folder)):
                return False
        if stage.job in POLICIES:
            rows[name] = {**evaluation(shared, workdir, name, paths[name][0]),
                          **training_tokens(folder, stage.job)}
    table = results_table(rows)
    if multihost.is_primary():
        (epath.Path(workdir) / "results.md").write_text(table)
    print(table)
    return True
