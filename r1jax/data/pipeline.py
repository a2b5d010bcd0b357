"""grain pipelines: prompt batches for RL and packed token windows for pretraining.

Both are shuffled with a seed, reshuffled each epoch, repeated forever and batched. Iterate with
`it = iter(ds)`; `it.get_state()` / `it.set_state(state)` (a small dict) resume exactly, so a
run resumed at step k sees the batches it would have seen.

Batches are read in the calling thread, with no worker processes and no prefetch: each is a few
dicts or a gather of rows, cheaper than a thread hand-off, and grain's default (16 threads
reading 500 elements ahead) competes with JAX for a laptop's cores. grain's index shuffle is slow
on very small datasets (about 5 ms an element at 10 elements, 50 us at 1,000).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grain
import numpy as np

from r1jax.tokenizers import Tokenizer

_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def prompt_dataset(
    examples: Sequence[dict], batch_size: int, seed: int, shuffle: bool = True
) -> grain.IterDataset:
    """Batches of `batch_size` examples (lists of dicts, as given), epoch after epoch; a batch
    may span two epochs."""
    if not examples:
        raise ValueError("prompt_dataset got no examples.")
    ds = grain.MapDataset.source(list(examples))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    return ds.repeat().batch(batch_size, batch_fn=list).to_iter_dataset(_READ_OPTIONS)


def pack(documents: Iterable[str], tokenizer: Tokenizer, seq_len: int) -> np.ndarray:
    """Documents tokenized, each followed by eos, concatenated, and cut into int32 windows of
    `seq_len + 1` tokens (inputs and their next-token targets) that overlap by one token, so
    every token is a target once. The tail that does not fill a window is dropped."""
    stream = []
    for doc in documents:
        stream += tokenizer.encode(doc)
        stream.append(tokenizer.eos_id)
    n = (len(stream) - 1) // seq_len
    if n == 0:
        raise ValueError(f"The documents hold {len(stream)} tokens, fewer than seq_len + 1.")
    tokens = np.asarray(stream[: n * seq_len + 1], dtype=np.int32)
    starts = np.arange(n)[:, None] * seq_len
    return tokens[starts + np.arange(seq_len + 1)]


def pretraining_dataset(
    documents: Iterable[str], tokenizer: Tokenizer, seq_len: int, batch_size: int, seed: int
) -> grain.IterDataset:
    """int32 [batch_size, seq_len + 1] batches of packed windows (see `pack`), shuffled."""
    windows = pack(documents, tokenizer, seq_len)
    ds = grain.MapDataset.source(windows).shuffle(seed=seed).repeat().batch(batch_size)
    return ds.to_iter_dataset(_READ_OPTIONS)
