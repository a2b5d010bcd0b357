"""A run's policy as an HF checkpoint, to serve or evaluate with other tools (transformers, vLLM,
lighteval): safetensors and config.json (`r1jax.models.save_hf`) plus the tokenizer files the run
was trained with.

    out = export("runs/aha_tiny", "runs/aha_tiny.hf", step=200, dtype="bfloat16")

    python -m r1jax.export --workdir=DIR [--step=N] --out=DIR [--dtype=float32|bfloat16]

The policy is read by `r1jax.policy.load_policy` (never the reference or the optimizer state)
into host memory, so exporting needs no accelerator and a model larger than one accelerator
exports on any machine with the RAM. The checkpoint is written to ``<out>.partial`` and renamed
to ``<out>`` once complete: a killed export leaves no ``<out>`` that looks finished (and the next
export clears its ``.partial``). An ``<out>`` that exists and is not empty is refused.

--workdir, --out and --dtype are the flags every r1jax command shares (`r1jax.cli`); an unset
--dtype keeps the run's (its config's model.dtype, else float32).
"""

import functools
import shutil
import sys
import tempfile
from pathlib import Path

import jax
from absl import flags
from etils import epath

from r1jax import cli, models, policy
from r1jax import files as files_lib
from r1jax.mesh import make_mesh

DTYPES = ("float32", "bfloat16")
# The tokenizer files of an HF checkpoint that r1jax and transformers read; whichever exist
# beside the run's tokenizer are exported.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "chat_template.jinja", "vocab.json", "merges.txt",
                   "tokenizer.model")
_TOKENIZERS = {"tokenizer.json", "tokenizer.model"}


def tokenizer_files(source) -> dict[str, Path]:
    """Name in the export -> file, for the tokenizer ``source`` (`policy.tokenizer_source`): the
    `TOKENIZER_FILES` in its directory. A tokenizer under another name (a run's config may name
    any tokenizer.json or SentencePiece .model file; `tokenizers.load_tokenizer` takes a lone
    *.model in a directory) is exported under the name HF loaders look for, without the other
    kind's file, which the loaders would prefer."""
    source = Path(source)
    directory = source if source.is_dir() else source.parent
    files = {name: directory / name for name in TOKENIZER_FILES if (directory / name).is_file()}
    lone_models = sorted(directory.glob("*.model")) if source.is_dir() else []
    if source.is_dir() and not _TOKENIZERS & files.keys() and len(lone_models) == 1:
        source = lone_models[0]
    if source.is_file():
        files = {name: file for name, file in files.items() if name not in _TOKENIZERS}
        files["tokenizer.json" if source.suffix == ".json" else "tokenizer.model"] = source
    if not _TOKENIZERS & files.keys():
        raise FileNotFoundError(f"the run's tokenizer {source} is not a tokenizer.json, a "
                                f"SentencePiece .model, or a directory holding one")
    return files


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; export writes a new directory and "
                              f"never overwrites one")


def _host_mesh():
    """One CPU device, where the params go from the checkpoint to the files without taking an
    accelerator's memory; the first device where JAX_PLATFORMS leaves the CPU backend out."""
    try:
        devices = jax.devices("cpu")
    except RuntimeError:
        devices = jax.devices()
    return make_mesh(devices=devices[:1])


def export(workdir, out_dir, step: int | None = None, dtype: str | None = None) -> Path:
    """Write the policy of checkpoint ``step`` (default: the latest) of r1jax workdir ``workdir``
    as an HF checkpoint in ``out_dir`` with the run's tokenizer files; the path written.
    ``dtype``: "float32" or "bfloat16" (default: the run's). Everything that can be checked is
    checked before the checkpoint is read: out_dir, the step (an error naming those that exist),
    the tokenizer."""
    workdir, out = Path(workdir), Path(out_dir).absolute()
    _check_out(out)
    if dtype not in (None, *DTYPES):
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    steps = policy.checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{workdir} holds no complete checkpoint")
    step = steps[-1] if step is None else step
    files = tokenizer_files(policy.tokenizer_source(workdir))
    cfg, params = policy.load_policy(workdir, dtype, _host_mesh(), step=step)
    write(cfg, params, files, out)
    print(f"exported step {step} of {workdir} ({params['embed']['embedding'].dtype}) to {out}")
    return out


def write_final(config, workdir, cfg, params, tokenizer_source) -> None:
    """A finished training job's policy ``params`` (sharded or not) as an HF checkpoint in
    ``workdir/config.export`` with ``config.model.dtype``, once: a rerun of a finished run, or a
    config without ``export``, writes nothing. Process 0 writes it."""
    from r1jax import multihost

    out = epath.Path(workdir).absolute() / config.get("export", "")
    if not config.get("export") or out.exists():
        return
    dtype = jax.numpy.dtype(config.model.get("dtype") or "float32")  # as export()'s
    params = jax.tree.map(lambda x: x.astype(dtype), multihost.fetch(params))
    if multihost.is_primary():
        write(cfg, params, tokenizer_files(tokenizer_source), out)


def write(cfg, params, files: dict[str, Path], out, head: str = "lm",
          pad_id: int | None = None) -> None:
    """``params`` (host arrays) as an HF checkpoint in the directory ``out`` (which must not
    exist or be empty) with the tokenizer ``files`` (`tokenizer_files`), through
    ``<out>.partial``; in cloud storage (gs://), written locally and copied with config.json
    last (what loaders look for first). ``head`` and ``pad_id`` as `models.save_hf` takes them
    (a reward model: "score")."""
    out = epath.Path(out)
    _check_out(out)
    save = functools.partial(models.save_hf, cfg, params, head=head, pad_id=pad_id)
    if not files_lib.is_cloud_path(out):
        _write_local(save, files, Path(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "hf"
        _write_local(save, files, local)
        out.mkdir(parents=True, exist_ok=True)
        for file in sorted(local.iterdir(), key=lambda f: f.name == "config.json"):
            (out / file.name).write_bytes(file.read_bytes())


def _write_local(save, files: dict[str, Path], out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a killed export's, by its name
    save(str(partial))
    for name, file in files.items():
        shutil.copyfile(file, partial / name)
    if out.exists():
        out.rmdir()  # empty, as checked
    partial.rename(out)


# --- Command line ------------------------------------------------------------------------------

_STEP = flags.DEFINE_integer("step", None, "the checkpoint step to export (default: the latest)")


def main(argv: list[str]) -> Path:
    cli.parse("r1jax.export", argv)
    workdir, out = cli.WORKDIR.value, cli.OUT.value
    cli.require("r1jax.export", workdir=workdir, out=out)
    try:
        return export(workdir, out, _STEP.value, cli.DTYPE.value or None)
    except (OSError, ValueError) as e:
        sys.exit(f"r1jax.export: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
