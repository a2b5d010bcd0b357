"""grain pipelines: prompt batches for RL and packed (prompt, completion) windows for next-token
training (pretraining, SFT).

Both are shuffled with a seed, reshuffled each epoch, repeated forever and batched. Iterate with
`it = iter(ds)`; `it.get_state()` / `it.set_state(state)` (a small dict) resume exactly, so a
run resumed at step k sees the batches it would have seen.

In a run over several processes each reads its own rows of every batch: ``shard=(index,
count)`` (`r1jax.multihost.row_block`) yields rows index*b .. (index+1)*b - 1 of each global
batch of ``batch_size`` (b = batch_size / count), so the processes' rows together are the batch
one process would read, whatever the number of processes.

Batches are read in the calling thread, with no worker processes and no prefetch: each is a few
dicts or a gather of rows, cheaper than a thread hand-off, and grain's default (16 threads
reading 500 elements ahead) competes with JAX for a laptop's cores. grain's index shuffle is slow
on very small datasets (about 5 ms an element at 10 elements, 50 us at 1,000).
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import numpy as np

from r1jax.tokenizers import Tokenizer

_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _batches(ds: grain.MapDataset, batch_size: int, shard: tuple[int, int],
             batch_fn=None) -> grain.IterDataset:
    """``ds`` repeated forever in batches of ``batch_size``, this shard's rows of each."""
    index, count = shard
    if batch_size % count or not 0 <= index < count:
        raise ValueError(f"a batch of {batch_size} does not split into {count} shards, or shard "
                         f"{index} is not one of them")
    return (ds.repeat().batch(batch_size // count, batch_fn=batch_fn)[index::count]
            .to_iter_dataset(_READ_OPTIONS))


def prompt_dataset(
    examples: Sequence[dict], batch_size: int, seed: int, shuffle: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> grain.IterDataset:
    """Batches of `batch_size` examples (lists of dicts, as given; this shard's rows of each),
    epoch after epoch; a batch may span two epochs."""
    if not examples:
        raise ValueError("prompt_dataset got no examples.")
    ds = grain.MapDataset.source(list(examples))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    return _batches(ds, batch_size, shard, batch_fn=list)


def pack_pairs(pairs, tokenizer: Tokenizer, seq_len: int, mask_prompt: bool = True):
    """(prompt, completion) pairs tokenized apart (as at inference), each followed by eos and
    packed whole into windows: tokens int32 [n, seq_len + 1], a loss mask bool [n, seq_len] over
    their targets tokens[:, 1:], and segment ids int32 [n, seq_len + 1] (1, 2, ... for the
    documents of a window, 0 for padding).

    The model attends within a document only and restarts its positions there (the segment ids
    go to `r1jax.models.token_logprobs` as its attention mask), so a packed document is trained
    as it is seen at inference, alone from position 0. The loss mask is False on padding, on the
    first token of each document (nothing in its segment predicts it) and, with
    ``mask_prompt``, on prompt tokens. No document is cut across two windows (a completion
    trained without its prompt would teach the model to answer questions it cannot see); one
    longer than a window is truncated.
    """
    windows, masks, segments, tokens, targets, ids = [], [], [], [], [], []

    def flush():
        pad = seq_len + 1 - len(tokens)
        windows.append(tokens + [tokenizer.pad_id] * pad)
        masks.append((targets + [False] * pad)[1:])
        segments.append(ids + [0] * pad)

    for prompt, completion in pairs:
        p, c = tokenizer.encode(prompt), tokenizer.encode(completion) + [tokenizer.eos_id]
        doc = (p + c)[:seq_len + 1]
        target = ([False] + [not mask_prompt] * (len(p) - 1) + [True] * len(c))[:len(doc)]
        if tokens and len(tokens) + len(doc) > seq_len + 1:
            flush()
            tokens, targets, ids = [], [], []
        segment = (ids[-1] if ids else 0) + 1
        tokens, targets, ids = tokens + doc, targets + target, ids + [segment] * len(doc)
    if tokens:
        flush()
    return (np.asarray(windows, np.int32), np.asarray(masks, bool),
            np.asarray(segments, np.int32))


def sft_dataset(packed, batch_size: int, seed: int,
                shard: tuple[int, int] = (0, 1)) -> grain.IterDataset:
    """Shuffled, repeated batches {"tokens": [B, seq_len + 1], "loss_mask": [B, seq_len],
    "segments": [B, seq_len + 1]} of the ``pack_pairs`` windows ``packed`` (this shard's rows
    of each)."""
    windows = [{"tokens": t, "loss_mask": m, "segments": s}
               for t, m, s in zip(*packed, strict=True)]
    return _batches(grain.MapDataset.source(windows).shuffle(seed=seed), batch_size, shard)
