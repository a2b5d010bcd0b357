"""Run metrics: rollout statistics (length, accuracy, reflective words), the JSONL + TensorBoard
writer, decoded samples and the progress bar. Host-side numpy and plain Python only.

Files in a workdir (docs/architecture.md, "Conventions"):
    metrics.jsonl                one line per step: {"step": s, "<key>": value, ...}, keys sorted
                                 after "step", non-finite values written as null
    tb/events.out.tfevents.*     the same scalars for TensorBoard
    samples/step_000123.jsonl    a few decoded completions per evaluation

Files go through etils.epath (what orbax uses), so a workdir may be a local directory or a
``gs://`` path.

Missing statistics are omitted, never NaN: `length/correct` is absent from a step with no
correct response, so a curve skips that step instead of showing a value that is not data.
"""

import contextlib
import json
import math
import os
import re
import sys
import time

import numpy as np
from etils import epath
from tqdm import tqdm

from r1jax import files

# The paper's ten reflective words, in its order (docs/recipe.md §7).
REFLECTIVE_WORDS = ("wait", "mistake", "however", "but", "retry", "error", "verify", "wrong",
                    "evaluate", "check")

# Whole words, case-insensitive, exact forms: the paper counts these words, not stems, so
# "Wait," / "WAIT" / "re-check" / "wait's" count and "waiting", "await", "checks", "checked",
# "errors", "verifying", "butter", "check_x" do not. (\b is the Unicode word boundary: letters,
# digits and "_" are word characters; hyphens and apostrophes are not.)
_REFLECTIVE_RE = re.compile(r"\b(" + "|".join(REFLECTIVE_WORDS) + r")\b", re.IGNORECASE)
_WORD_INDEX = {w: i for i, w in enumerate(REFLECTIVE_WORDS)}


def reflection_counts(texts):
    """Reflective-word occurrences per text.

    Returns {"total": int [N], "wait": int [N], "words": int [N, 10]} where column j of "words"
    counts REFLECTIVE_WORDS[j] and "total" is its row sum.
    """
    words = np.zeros((len(texts), len(REFLECTIVE_WORDS)), np.int64)
    for i, text in enumerate(texts):
        for match in _REFLECTIVE_RE.findall(text):
            words[i, _WORD_INDEX[match.lower()]] += 1
    return {"total": words.sum(axis=1), "wait": words[:, _WORD_INDEX["wait"]], "words": words}


def rollout_stats(texts, lengths, correct, truncated, formatted):
    """The per-step rollout statistics the R1-Zero loop logs, over N completions.

    texts: N decoded completions; lengths: their token counts; correct, truncated, formatted:
    N booleans (or 0/1 rewards). Returns floats under:
        accuracy, format_rate, length/mean, length/max, length/std (population, ddof=0),
        length/correct, length/incorrect (mean length of that subset; omitted when it is empty),
        length/truncated_frac, reflect/rate and reflect/wait_rate (occurrences per response),
        reflect/word/<w> (occurrences of each word per response), reflect/per_1k_tokens
        (occurrences per 1000 completion tokens; omitted when there are no tokens).
    """
    n = len(texts)
    if n == 0:
        raise ValueError("rollout_stats needs at least one completion, got none.")
    lengths = np.asarray(lengths, np.float64)
    correct, truncated, formatted = (np.asarray(x).astype(bool)
                                     for x in (correct, truncated, formatted))
    for name, x in (("lengths", lengths), ("correct", correct), ("truncated", truncated),
                    ("formatted", formatted)):
        if x.shape != (n,):
            raise ValueError(f"rollout_stats: `{name}` has shape {x.shape}, expected ({n},) "
                             f"to match the {n} texts.")
    counts = reflection_counts(texts)
    stats = {
        "accuracy": correct.mean(),
        "format_rate": formatted.mean(),
        "length/mean": lengths.mean(),
        "length/max": lengths.max(),
        "length/std": lengths.std(),
        "length/truncated_frac": truncated.mean(),
        "reflect/rate": counts["total"].mean(),
        "reflect/wait_rate": counts["wait"].mean(),
    }
    if correct.any():
        stats["length/correct"] = lengths[correct].mean()
    if not correct.all():
        stats["length/incorrect"] = lengths[~correct].mean()
    for w, rate in zip(REFLECTIVE_WORDS, counts["words"].mean(axis=0)):
        stats[f"reflect/word/{w}"] = rate
    if lengths.sum() > 0:
        stats["reflect/per_1k_tokens"] = 1000.0 * counts["total"].sum() / lengths.sum()
    return {k: float(v) for k, v in stats.items()}


def _parse_lines(path):
    """(line number, record) for each line of a JSONL file, null -> NaN.

    A malformed last line is skipped (a process killed mid-write leaves one); a malformed line
    elsewhere is an error naming the file and line.
    """
    lines = epath.Path(path).read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path} line {i + 1} is not valid JSON: {line[:80]!r}") from None
        records.append({k: math.nan if v is None else v for k, v in record.items()})
    return records


def read_metrics(path):
    """The records of a metrics.jsonl file as a list of dicts, null values read as NaN."""
    return _parse_lines(path)


def _finite_or_none(x):
    return x if math.isfinite(x) else None


class MetricsWriter:
    """Writes one metrics.jsonl line and TensorBoard scalars per step.

    Resuming: a run restarted at step k opens MetricsWriter(workdir, start_step=k). Lines with
    step >= k left by the interrupted run are dropped (the file is rewritten atomically) and
    TensorBoard is told to purge its events from step k, so every step appears once. A fresh run
    (start_step=0) therefore starts from an empty metrics.jsonl. Steps must strictly increase.
    Each line is flushed as it is written, so a killed run leaves a readable file. Non-finite
    values are null in the JSONL and left out of TensorBoard.
    """

    def __init__(self, workdir, start_step=0):
        workdir = epath.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / "metrics.jsonl"
        kept = []
        if self.path.exists() and start_step > 0:
            kept = [r for r in _parse_lines(self.path) if r["step"] < start_step]
        self._lines = [self._line(r["step"], {k: v for k, v in r.items() if k != "step"})
                       for r in kept]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(self._lines))
        tmp.replace(self.path)
        self._last_step = kept[-1]["step"] if kept else -1
        # Objects in cloud storage cannot be appended to: there each step rewrites the file.
        self._file = None if files.is_cloud_path(workdir) else self.path.open("a")
        self._tb = _TensorBoard(str(workdir / "tb"), purge_step=start_step)

    @staticmethod
    def _line(step, metrics):
        record = {"step": int(step)}
        record.update((k, _finite_or_none(metrics[k])) for k in sorted(metrics))
        return json.dumps(record, allow_nan=False) + "\n"

    def write(self, step, metrics):
        """Appends metrics (str -> number; numpy and JAX scalars accepted) for `step`."""
        if step <= self._last_step:
            raise ValueError(f"MetricsWriter: step {step} written after step {self._last_step}; "
                             f"steps must increase (to rewrite from step k, reopen with "
                             f"start_step=k).")
        values = {}
        for k, v in metrics.items():
            try:
                values[k] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"MetricsWriter: metric {k!r} at step {step} is not a number: "
                                 f"{v!r}.") from None
        line = self._line(step, values)
        with _naming(self.path):
            if self._file is None:
                self._lines.append(line)
                self.path.write_text("".join(self._lines))
            else:
                self._file.write(line)
                self._file.flush()
        self._tb.write(int(step), values)
        self._last_step = step

    def close(self):
        """Close both files; a failure to write their last bytes raises, after both closed."""
        try:
            with _naming(self.path):
                if self._file is not None:
                    self._file.close()
        finally:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def _naming(path):
    """An OSError raised inside (a full disk, a permission) names ``path``, which Python's
    buffered writes leave out."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, f"writing {path} failed ({e.strerror or e})") from e


class _TensorBoard:
    """Scalars as TensorBoard events in one file of ``logdir``, written and flushed in the
    caller's thread at each step. tensorboardX's SummaryWriter writes from a thread of its own,
    which dies on a write error (a full disk) and then blocks the process at exit, its queue
    full; here the error reaches the caller, naming the file."""

    def __init__(self, logdir: str, purge_step: int):
        # Imported here: tensorboardX imports torch when it is installed (seconds), and most
        # users of this module (evaluation, rollout statistics) write no events.
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
        from tensorboardX.record_writer import directory_check

        self._event, self._summary = event_pb2, summary_pb2
        directory_check(logdir)
        self._events = EventsWriter(os.path.join(logdir, "events"))
        self.path = self._events._file_name
        if purge_step > 0:  # TensorBoard hides the events of steps >= purge_step before this
            self._write(event_pb2.Event(step=purge_step, session_log=event_pb2.SessionLog(
                status=event_pb2.SessionLog.START)))

    def write(self, step: int, values: dict) -> None:
        """One event holding ``values``' finite scalars (a non-finite one is a gap in
        TensorBoard; the JSONL line holds its null)."""
        Value = self._summary.Summary.Value
        self._write(self._event.Event(step=step, wall_time=time.time(), summary=(
            self._summary.Summary(value=[Value(tag=k, simple_value=v)
                                         for k, v in values.items() if math.isfinite(v)]))))

    def _write(self, event) -> None:
        with _naming(self.path):
            self._events.write_event(event)
            self._events.flush()

    def close(self) -> None:
        with _naming(self.path):
            self._events.close()


class Discard:
    """Stands in for a MetricsWriter or a Progress where nothing is shown or written (the
    processes of a multi-process run but process 0)."""

    def write(self, step, metrics):
        pass

    update = write

    def close(self):
        pass


def _jsonable(x):
    if hasattr(x, "tolist"):  # numpy and JAX arrays and scalars
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def write_samples(workdir, step, records):
    """Writes decoded completions of one evaluation to workdir/samples/step_{step:06d}.jsonl.

    records: dicts such as {"prompt", "completion", "reward", "correct", ...}; numpy and JAX
    values are converted. The file is replaced if it exists (a resumed run re-evaluating a step).
    Returns its path.
    """
    path = epath.Path(workdir) / "samples" / f"step_{step:06d}.jsonl"
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, default=_jsonable, ensure_ascii=False) + "\n"
                                for r in records))
    return str(path)


def write_evaluation(workdir, summary: dict, name: str = "evaluation.json") -> None:
    """A training job's evaluation summary in workdir/``name``: the final one in
    evaluation.json (what a pipeline's results table reads), the RL job's starting policy's in
    base_evaluation.json (what a sweep's table reads); process 0 writes it."""
    from r1jax import multihost

    if multihost.is_primary():
        path = epath.Path(workdir) / name
        with _naming(path):
            path.write_text(json.dumps(summary, indent=2, default=_jsonable))


class Progress:
    """Progress display: step, reward, accuracy, mean length and ETA.

    Steps are counted as completed steps: `start_step` were done before this process started and
    `update(step, metrics)` is called once `step` steps are done (1 .. total_steps). On a terminal
    it is a tqdm bar; otherwise (logs, CI) one line is printed after the first step, then about
    20 times over the run, and after the last, so logs stay readable.
    """

    _SHOWN = (("reward", "reward/total", "{:.3f}"), ("acc", "accuracy", "{:.3f}"),
              ("len", "length/mean", "{:.0f}"))

    def __init__(self, total_steps, start_step=0, file=None):
        self.total, self.start = total_steps, start_step
        self.file = file or sys.stdout
        self._t0 = time.monotonic()
        self._every = max(1, (total_steps - start_step) // 20)
        self._bar = None
        if self.file.isatty():
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step",
                             file=self.file, dynamic_ncols=True)

    def _fields(self, metrics):
        return {name: fmt.format(float(metrics[key]))
                for name, key, fmt in self._SHOWN if key in metrics}

    def update(self, step, metrics):
        fields = self._fields(metrics)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(fields, refresh=True)
            return
        done = step - self.start
        if not (done == 1 or done % self._every == 0 or step >= self.total):
            return
        eta = (time.monotonic() - self._t0) / max(done, 1) * max(self.total - step, 0)
        parts = [f"step {step}/{self.total}"] + [f"{k} {v}" for k, v in fields.items()]
        parts.append(f"eta {_hms(eta)}")
        print(" | ".join(parts), file=self.file, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _hms(seconds):
    s = round(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress(total_steps, start_step=0, file=None):
    """A Progress for a run of total_steps steps of which start_step are already done."""
    return Progress(total_steps, start_step, file)
