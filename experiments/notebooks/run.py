"""Run a notebook of this folder in full and write it back with its outputs, closed by a cell that
says how long the run took, on what, at which commit, and the command that redoes it.

    python experiments/notebooks/run.py reward_ablation.ipynb --cpu_devices=2   # a 2-core CPU

The kernel imports this checkout's r1jax. A notebook's runs go to its WORKDIR (runs/NAME at the
repository's root); runs already there are read, not retrained, so a rerun after an interrupted
one continues where it stopped, and the time it reports is this execution's alone.
`tests/test_notebooks.py` executes every notebook the same way in smoke mode.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent
REPO = FOLDER.parent.parent
sys.path.insert(0, str(REPO))  # this checkout's r1jax, as the kernel gets it
from r1jax import huge_pages  # noqa: E402

RUN_NOTE = "run-note"  # the tag of the closing cell this script writes (replaced on each run)


def execute(notebook, cpu_devices: int | None = None, timeout: int | None = None):
    """Execute ``notebook`` (an nbformat notebook of this folder) top to bottom on a fresh
    kernel; a failing cell raises CellExecutionError naming it. ``cpu_devices`` splits the CPU
    into that many JAX devices (as ``--cpu_devices`` does for r1jax.main); None keeps the
    kernel's own."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if cpu_devices:  # on the CPU alone: no accelerator plugin is initialised (or logs)
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={cpu_devices}",
                   JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env = huge_pages.environment(env)  # as `python -m r1jax.main` runs its training
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(FOLDER)}}).execute(env=env)
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="a notebook file of experiments/notebooks/")
    parser.add_argument("--cpu_devices", type=int, default=None,
                        help="run on the CPU alone, split into this many JAX devices (its core "
                             "count, as a rule); default: the kernel's own devices")
    args = parser.parse_args()
    path = FOLDER / Path(args.notebook).name
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if RUN_NOTE not in c.metadata.get("tags", ())]
    devices = (f"{args.cpu_devices} CPU device(s) on {os.cpu_count()} cores" if args.cpu_devices
               else "the kernel's default devices")
    start = time.time()
    execute(notebook, args.cpu_devices)
    minutes = (time.time() - start) / 60
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    notebook.cells.append(nbformat.v4.new_markdown_cell(
        f"*This execution: {minutes:.0f} min, {devices}, {time.strftime('%Y-%m-%d')}, commit "
        f"{commit} (runs already in the workdir were read, not retrained). Redo it with "
        f"`python experiments/notebooks/run.py {' '.join(sys.argv[1:])}`.*",
        metadata={"tags": [RUN_NOTE]}))
    nbformat.write(notebook, path)
    print(f"{path}: executed in {minutes:.1f} min, outputs written")


if __name__ == "__main__":
    main()
