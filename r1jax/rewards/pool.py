"""RewardScorer: the configured rewards, scored in worker processes with a per-call timeout.

multiprocessing.Pool and concurrent.futures cannot stop one hung call (a sympy simplification, a
regex, a bug in a reward function) without losing the whole pool, so this is a small pool of our
own:
- Workers are forks of a 'forkserver' process that imported r1jax.rewards and warmed up
  math-verify once (`_forkserver.py`). Forking the training process itself is unsafe once JAX has
  started threads in it, and 'spawn' would spend seconds re-importing sympy in every replacement
  worker.
- A batch is cut into chunks of consecutive completions, a few per worker; each chunk goes out as
  one message. The worker calls each reward function on one completion at a time and sends back
  one small message per call, so the parent always knows which call is running and for how long.
- A call that raises scores 0 and counts in `reward/<name>_errors`. A call still running after
  `timeout_s` scores 0 and counts in `reward/<name>_timeouts`: its worker is killed and replaced
  and the rest of its chunk goes back in the queue. A worker that dies (a segfault, os._exit)
  counts as an error of the call it was running. One pathological completion therefore costs one
  zero and at most `timeout_s` of one worker; the rest of the batch is scored normally.
- A NaN from a reward function (an example that cannot be scored) passes through, and the total
  is NaN there (see `registry.weighted_sum`).
- `scoped` rewards score only the examples that name them (`example["reward"]`, which RL prompt
  sources set): in a mix of MATH and Countdown prompts, "accuracy" scores the MATH completions and
  "countdown" the Countdown ones, while unscoped rewards (format, language) score every one (and
  every reward scores an example that names none). A scoped reward is not called on other
  examples; its term is NaN there and adds nothing to the total.
Functions registered with `rewards.register` and languages registered with
`rewards.register_language` before the scorer is created are sent to its workers.
"""

import collections
import math
import multiprocessing
import multiprocessing.connection
import resource
import signal
import time

import numpy as np

from r1jax.rewards import language, registry, sandbox
from r1jax.rewards.registry import applies

WORKER_MEMORY_BYTES = 8 << 30  # address-space cap per worker; sympy blowups raise MemoryError
_CHUNKS_PER_WORKER = 4
_START_TIMEOUT_S = 120.0  # a first start imports sympy, math-verify and lingua in the fork server


def _serve(conn, fns: dict, languages: dict, scoped: frozenset) -> None:
    """Worker loop: for each task (first reward index, completions, examples), one message
    (value, failed, seconds) per reward, in completion-major order (NaN, uncalled, where the
    reward does not apply)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which closes us
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(hard, WORKER_MEMORY_BYTES)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    for code, is_word in languages.items():
        language.register_language(code, is_word)
    names = list(fns)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        first, completions, examples = task
        for i, (completion, example) in enumerate(zip(completions, examples, strict=True)):
            for name in names[first if i == 0 else 0 :]:
                if not applies(name, example, scoped):
                    conn.send((math.nan, False, 0.0))
                    continue
                start = time.perf_counter()
                try:
                    value = np.asarray(fns[name]([completion], [example]), dtype=np.float64)
                    if value.shape != (1,):
                        raise ValueError(
                            f"reward {name!r} returned shape {value.shape} for one completion"
                        )
                    result = (float(value[0]), False)
                except BaseException:  # whatever a reward function does, it scores 0 and is counted
                    result = (0.0, True)
                conn.send((*result, time.perf_counter() - start))


class _Worker:
    def __init__(self, context, fns: dict, languages: dict, scoped: frozenset):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, fns, languages, scoped),
                                       daemon=True)
        self.process.start()
        child.close()
        self.position = None  # [next completion, end of chunk, next reward index] while busy
        self.started = math.inf  # when the call it is running started

    def wait_ready(self) -> None:
        if not self.conn.poll(_START_TIMEOUT_S) or self.conn.recv() != "ready":
            raise RuntimeError(f"reward worker did not start within {_START_TIMEOUT_S:.0f} s")

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class _Batch:
    """The bookkeeping of one `score` call: what is queued, which call each worker is running,
    the values and counters so far."""

    def __init__(self, scorer: "RewardScorer", completions, examples):
        self.scorer, self.completions, self.examples = scorer, completions, examples
        self.names, n = list(scorer.weights), len(completions)
        self.values = np.zeros((len(self.names), n))
        self.applies = np.array([[applies(name, ex, scorer.scoped) for ex in examples]
                                 for name in self.names], bool).reshape(len(self.names), n)
        self.errors, self.timeouts = collections.Counter(), collections.Counter()
        self.slowest = collections.defaultdict(float)
        chunk = max(1, math.ceil(n / (_CHUNKS_PER_WORKER * len(scorer.workers))))
        self.queue = collections.deque((s, min(s + chunk, n), 0) for s in range(0, n, chunk))
        self.busy: list[_Worker] = []

    def run(self) -> None:
        while self.queue or self.busy:
            for worker in list(self.scorer.workers):
                if self.queue and worker not in self.busy:
                    self.dispatch(worker)
            if not self.busy:
                continue
            first_deadline = min(w.started for w in self.busy) + self.scorer.timeout_s
            wait_s = max(0.0, first_deadline - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in self.busy], timeout=wait_s)
            for worker in [w for w in self.busy if w.conn in ready]:
                self.drain(worker)
            late = time.monotonic() - self.scorer.timeout_s
            for worker in [w for w in self.busy if w.started <= late and not w.conn.poll()]:
                self.fail(worker, self.timeouts)

    def dispatch(self, worker: _Worker) -> None:
        item, end, k = self.queue.popleft()
        worker.position = [item, end, k]
        worker.started = time.monotonic()
        self.busy.append(worker)
        try:
            worker.conn.send((k, self.completions[item:end], self.examples[item:end]))
        except OSError:  # it died between tasks; its first call counts as an error
            self.fail(worker, self.errors)

    def drain(self, worker: _Worker) -> None:
        try:
            while worker in self.busy and worker.conn.poll():
                value, failed, seconds = worker.conn.recv()
                self.settle(worker, value, seconds, self.errors if failed else None)
        except (EOFError, OSError):
            self.fail(worker, self.errors)

    def settle(self, worker: _Worker, value: float, seconds: float, counter=None) -> None:
        """Records the call `worker` is running and moves it to its next call."""
        item, end, k = worker.position
        name = self.names[k]
        self.values[k, item] = value
        self.slowest[name] = max(self.slowest[name], seconds)
        if counter is not None:
            counter[name] += 1
        k = (k + 1) % len(self.names)
        item += k == 0
        worker.position = [item, end, k]
        worker.started = time.monotonic()
        if item == end:
            self.busy.remove(worker)

    def fail(self, worker: _Worker, counter) -> None:
        """The call `worker` is running hung or killed it: it scores 0 and is counted, the worker
        is replaced and the rest of its chunk goes back in the queue."""
        self.settle(worker, 0.0, time.monotonic() - worker.started, counter)
        if worker in self.busy:
            self.busy.remove(worker)
            self.queue.appendleft(tuple(worker.position))
        self.scorer.replace(worker)

    def stats(self) -> dict[str, float]:
        stats = {}
        for k, name in enumerate(self.names):
            stats[f"reward/{name}_errors"] = self.errors[name]
            stats[f"reward/{name}_timeouts"] = self.timeouts[name]
            unscorable = np.isnan(self.values[k][self.applies[k]])
            stats[f"reward/{name}_unscorable"] = int(unscorable.sum())
            stats[f"reward/{name}_slowest_s"] = self.slowest[name]
        return stats


class RewardScorer:
    """Scores completions with {reward name: weight} in `num_workers` processes; each call of a
    reward function on one completion may take at most `timeout_s` seconds; `scoped` rewards score
    only the examples that name them (see the module docstring). Not thread-safe: one `score` at
    a time. Close it (or use it as a context manager) to stop the workers."""

    def __init__(self, weights: dict[str, float], num_workers: int = 2, timeout_s: float = 10.0,
                 scoped=()):
        if not weights:
            raise ValueError("RewardScorer needs at least one reward in `weights`")
        if num_workers < 1:
            raise ValueError(
                f"RewardScorer needs at least one worker, got num_workers={num_workers}"
            )
        if "code" in weights and timeout_s <= sandbox.CODE_TIMEOUT_S + 1:
            raise ValueError(
                f"timeout_s must exceed the code reward's sandbox time "
                f"({sandbox.CODE_TIMEOUT_S} s) by more than 1 s"
            )
        self.weights = dict(weights)
        self.timeout_s = timeout_s
        self.scoped = frozenset(scoped)
        if self.scoped - self.weights.keys():
            raise ValueError(f"scoped rewards {sorted(self.scoped - self.weights.keys())} are not "
                             f"among the configured ones ({', '.join(self.weights)})")
        self._fns = {name: registry.get(name) for name in self.weights}
        self._languages = language.custom_languages()
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["r1jax.rewards", "r1jax.rewards._forkserver"])
        self.workers = [self._new_worker() for _ in range(num_workers)]
        for worker in self.workers:
            worker.wait_ready()

    def _new_worker(self) -> _Worker:
        return _Worker(self._context, self._fns, self._languages, self.scoped)

    def replace(self, worker: _Worker) -> None:
        worker.kill()
        new = self._new_worker()
        self.workers[self.workers.index(worker)] = new
        new.wait_ready()

    def score(
        self, completions, examples
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
        """Returns (total [N], {name: term [N]}, stats), stats holding per reward
        reward/<name>_errors, _timeouts, _unscorable (NaN count) and _slowest_s (longest call)."""
        if len(examples) != len(completions):
            raise ValueError(f"got {len(completions)} completions but {len(examples)} examples")
        batch = _Batch(self, completions, examples)
        try:
            batch.run()
        except BaseException:  # interrupted: busy workers would still send; start clean ones
            for worker in batch.busy:
                self.replace(worker)
            raise
        terms = dict(zip(batch.names, batch.values, strict=True))
        applied = {name: np.where(batch.applies[k], terms[name], 0.0)
                   for k, name in enumerate(batch.names)}
        return registry.weighted_sum(applied, self.weights), terms, batch.stats()

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join(timeout=1.0)
            worker.kill()
        self.workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
