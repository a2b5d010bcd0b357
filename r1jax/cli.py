"""What the command lines (``python -m r1jax.main``, ``python -m r1jax.evaluate``) share: absl
flags parsed with every mistake reported as one sentence, ``--cpu_devices``, and experiment
files read as ``--config=PATH[:ARG]`` reads them.

`load_experiment` lives here rather than in main.py because experiment files call it (to build
on experiments/common.py), and main.py runs as ``__main__``: importing it again from an
experiment would define its flags twice.
"""

import importlib.util
import os
import sys

from absl import flags
from ml_collections import config_flags

# Flags more than one command takes, defined once: absl's FLAGS is global to the process, where a
# name can be defined only once, and the tests import every command's module together.
WORKDIR = flags.DEFINE_string("workdir", None, "an r1jax run's directory (checkpoints, metrics, "
                              "plots, config.json)")
OUT = flags.DEFINE_string("out", None, "where the command writes its result")
CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:argument]")
DTYPE = flags.DEFINE_string("dtype", "", "parameter dtype, float32 or bfloat16 (default: the "
                            "command's own, see its --help)")
CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "split the host CPU into this many JAX devices, so that the mesh's "
    "data axis spans that many cores (XLA:CPU runs one computation on one core). On a CPU-only "
    "machine, its core count; batch sizes must divide by it. No effect on accelerators. "
    "Unset: the largest power of two up to the cores this process may use, at most 8 (unless "
    "XLA_FLAGS sets a device count).")
# A run over several processes (r1jax.multihost.initialize): TPU VMs need none of these.
COORDINATOR = flags.DEFINE_string("coordinator_address", "", "a multi-process run on CPU or GPU "
                                  "hosts: process 0's host:port, the same for every process")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "with --coordinator_address: how many "
                                     "processes the run has")
PROCESS_ID = flags.DEFINE_integer("process_id", -1, "with --coordinator_address: this "
                                  "process's index, 0 .. num_processes - 1")
HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 100, "a multi-process run ends (every "
                                 "process, with a message) when one has not answered this long")


def parse(prog: str, argv: list[str]) -> None:
    """Parse ``argv`` (the arguments after the program's name) into absl's flags, each flag at its
    default unless given, apply ``--cpu_devices`` and join the run's other processes when it has
    any (`r1jax.multihost.initialize`); a mistake exits with one sentence naming it (no
    traceback)."""
    from r1jax import multihost
    from r1jax.mesh import use_cpu_devices, use_default_cpu_devices

    flags.FLAGS.unparse_flags()
    # ml_collections defines a flag for each --config.KEY=VALUE override it finds in sys.argv,
    # not in the list parsed: a caller in the same process (a test, a notebook) passes its own
    # argv, and the previous call's override flags go (a second definition is an error).
    for name in [name for name in flags.FLAGS if "." in name]:
        delattr(flags.FLAGS, name)
    process_argv, sys.argv = sys.argv, [prog, *argv]
    try:
        rest = flags.FLAGS([prog, *argv])
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        message = str(e).replace("\\n", " ").replace("\n", " ").strip("'\"")
        sys.exit(f"{prog}: bad command line: {message}")
    except SyntaxError as e:  # in the experiment file --config names
        sys.exit(f"{prog}: {e.filename}, line {e.lineno}: {e.msg}")
    finally:
        sys.argv = process_argv
    if len(rest) > 1:
        sys.exit(f"{prog}: unexpected arguments {rest[1:]}")
    if CPU_DEVICES.value is None:
        use_default_cpu_devices()
    else:
        try:
            use_cpu_devices(CPU_DEVICES.value)
        except ValueError as e:
            sys.exit(f"{prog}: {e}")
    if COORDINATOR.value and not 0 <= PROCESS_ID.value < NUM_PROCESSES.value:
        sys.exit(f"{prog}: --coordinator_address needs --num_processes=N and --process_id in "
                 f"0 .. N-1, got {NUM_PROCESSES.value} and {PROCESS_ID.value}")
    multihost.initialize(COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value,
                         HEARTBEAT.value)


def require(prog: str, **values) -> None:
    """Exit naming the flags among ``values`` (name -> parsed value) that were not given."""
    missing = [f"--{name}" for name, value in values.items() if value is None or value == ""]
    if missing:
        sys.exit(f"{prog}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")


def unset_keys(config, prefix: str = "config") -> list[str]:
    """The keys of ``config`` still None: an experiment marks what only its user can give (a
    checkpoint's path) with ``ml_collections.config_dict.placeholder(str)``."""
    unset = []
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if value is None:
            unset.append(name)
        elif hasattr(value, "items"):
            unset += unset_keys(value, name)
    return unset


def load_experiment(path: str, arg: str = ""):
    """``get_config(arg)`` of an experiment file, as ``--config=PATH[:ARG]`` gives it (for
    notebooks, tests and experiments: ``load_experiment("experiments/aha_tiny.py", "smoke")``)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
