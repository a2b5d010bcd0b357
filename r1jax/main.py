"""Command line: ``python -m r1jax.main --config=experiments/X.py[:arg] --workdir=DIR``.

Overrides go after it as ``--config.rl.lr=1e-6``; a key that the config does not have is an
error naming it. The config's ``job`` picks what runs (`JOBS`; each returns whether it
finished); starting again with the same workdir resumes the run, and a run stopped by SIGTERM
exits with `STOPPED_EXIT`. ``--cpu_devices=N`` splits a CPU-only host into N devices (by
default one per core, a power of two up to 8: `mesh.default_cpu_devices`). A mistake in the
config, the data, a checkpoint or the workdir, and a failed save, exit with
status 1 and one sentence naming the key or file (`USER_ERRORS`; the traceback is written to
``workdir/error_traceback.txt``), before anything compiles wherever it can be known then.

A run over several processes (a TPU pod slice: the same command on every host; elsewhere with
``--coordinator_address``, ``--num_processes``, ``--process_id``) needs a workdir every process
sees (``gs://...`` or a shared filesystem); process 0 writes its files (docs/multihost.md).
"""

# ruff: noqa: E402  (the restart comes before the imports, which take seconds)
if __name__ == "__main__":
    from r1jax import huge_pages

    huge_pages.restart()

import importlib
import json
import sys
import traceback

from absl import logging
from etils import epath

from r1jax import cli, config_checks, multihost
from r1jax.cli import load_experiment  # noqa: F401  (r1jax.main.load_experiment for notebooks)

# config.job -> the function that runs it, as "module:function" (imported only when it runs, so
# that --cpu_devices takes effect before anything starts a JAX backend).
JOBS = {
    "rl": "r1jax.rl:job",  # R1-Zero / reasoning RL (after the toy world's pretraining if asked)
    "sft": "r1jax.sft:job",  # SFT on JSONL records: cold start, rejection-sampled set, distillation
    "rejection": "r1jax.rejection:job",  # sample, verify and filter into an SFT set (JSONL)
    "pretrain": "r1jax.toy:job",  # the toy world's tokenizer and base model alone
    "cold_start_data": "r1jax.toy:cold_start_job",  # the toy world's readable long-CoT SFT set
    "general_data": "r1jax.toy:general_data_job",  # the toy world's general prompts and pairs
    "reward_model": "r1jax.reward_model:job",  # a reward model trained on preference pairs
    "evaluate": "r1jax.evaluate:job",  # a checkpoint on benchmarks at the paper's protocol
    "pipeline": "r1jax.stages:job",  # stages (jobs above) in order, each in workdir/<stage>
}


# The exit status of a job stopped by SIGTERM (a preemption) after checkpointing: EX_TEMPFAIL,
# "try again", so a launcher can tell it from success (0) and from failure (1).
STOPPED_EXIT = 75


def main(argv: list[str]) -> None:
    cli.parse("r1jax.main", argv)
    config, workdir = cli.CONFIG.value, cli.WORKDIR.value
    cli.require("r1jax.main", config=config, workdir=workdir)
    if config.job not in JOBS:
        sys.exit(f"r1jax.main: config.job={config.job!r} is not one of {sorted(JOBS)}")
    if unset := cli.unset_keys(config):
        sys.exit(f"r1jax.main: the experiment needs {', '.join(unset)}: give "
                 f"{' '.join(f'--{key}=...' for key in unset)}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
    try:
        finished = run_job(config, workdir)
    except USER_ERRORS as e:
        sys.exit(f"r1jax.main: {e}{_traceback_note(workdir)}")
    if not finished:
        print(f"r1jax.main: stopped before the end (SIGTERM); checkpointed in {workdir}, and the "
              f"same command resumes it", file=sys.stderr)
        sys.exit(STOPPED_EXIT)


# What the jobs raise for a mistake in the config, the data, a checkpoint or the workdir (each
# message names the key, file or path), for a failed save and for a run that can only produce
# non-finite updates: the command says it in one sentence, the traceback goes to a file.
USER_ERRORS = (ValueError, OSError, FloatingPointError)
TRACEBACK_FILE = "error_traceback.txt"


def _traceback_note(workdir: str) -> str:
    """Writes the current exception's traceback to ``workdir/TRACEBACK_FILE`` when it can, and
    says where; a workdir that cannot be written gets none."""
    try:
        path = epath.Path(workdir) / TRACEBACK_FILE
        path.write_text(traceback.format_exc())
    except OSError:
        return ""
    return f" (traceback in {path})"


def run_job(config, workdir: str) -> bool:
    """Checks ``config`` (`config_checks`), writes ``workdir/config.json`` and runs
    ``config.job``; whether it finished."""
    config_checks.check(config)
    if multihost.is_primary():
        path = epath.Path(workdir)
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"the workdir {workdir} is a file, not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
        except OSError as e:
            raise OSError(f"cannot write to the workdir {workdir}: {e.strerror or e}") from e
    multihost.sync("workdir")
    module, function = JOBS[config.job].split(":")
    return getattr(importlib.import_module(module), function)(config, workdir)


if __name__ == "__main__":
    main(sys.argv[1:])
