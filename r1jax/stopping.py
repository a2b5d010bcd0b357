"""When generation stops: on token ids (eos) and on strings of any length, checked on device.

A stop string such as ``</answer>`` is one token of the toy tokenizer but several of a byte-level
BPE (Qwen's), and the same text can be spelt by different token sequences: a model may sample
``</`` ``answer`` ``>`` or ``</ans`` ``wer>``. So strings are matched on the bytes of the
completion, not on token ids: a row stops at the first token after which its decoded completion
contains a stop string (UTF-8 is self-synchronising, so a substring of the bytes is a substring
of the text). The sampler does this inside its jitted loop with no host round trip:

- ``stop_condition`` builds, once per tokenizer, a table with one row per token id: the token's
  first W and last W bytes (-1 where it is shorter), its byte length, and whether it contains a
  stop string by itself, with W = the longest stop string's length - 1.
- ``advance`` keeps the last W bytes of each completion. A stop string that ends inside a new
  token either lies inside the token (the table's flag) or starts in those W bytes and ends in
  the token's first W bytes: both are checked on [history ++ token's head], 2W bytes per row.

A matching token ends the completion, and the token is kept whole: the training pass needs the
token that was sampled, so the text may run a few bytes past the stop string (``</answer>\\n``).
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Table columns after the 2W bytes of head and tail.
_LENGTH, _CONTAINS = 0, 1


class StopCondition(NamedTuple):
    token_ids: tuple[int, ...] = ()  # stop on sampling any of these (eos, end of turn)
    strings: tuple[bytes, ...] = ()  # stop once the completion's bytes contain one of these
    table: np.ndarray | None = None  # int32 [V, 2W + 2], see the module docstring


def history_width(strings) -> int:
    """W: the bytes of a completion ``advance`` keeps (the longest string's length - 1)."""
    return max(1, max(map(len, strings)) - 1) if strings else 0


def stop_condition(tokenizer, strings=(), token_ids=()) -> StopCondition:
    """Stop on the tokenizer's eos, on ``token_ids``, and where the completion contains any of
    ``strings`` (non-empty text; a string that is a special token of the tokenizer, which
    decoding drops, goes to the ids instead)."""
    ids, texts = [tokenizer.eos_id, *token_ids], []
    pieces = tokenizer.token_bytes() if strings else []
    for string in strings:
        if not string:
            raise ValueError("an empty stop string would stop every completion at once")
        token = tokenizer.token_to_id(string)
        if token is not None and pieces[token] == b"":
            ids.append(token)  # a special token: decode drops it, so no text can contain it
        else:
            texts.append(string.encode())
    ids = tuple(dict.fromkeys(int(i) for i in ids))
    if not texts:
        return StopCondition(ids)
    texts = tuple(dict.fromkeys(texts))
    width = history_width(texts)
    table = np.full((len(pieces), 2 * width + 2), -1, np.int32)
    for i, piece in enumerate(pieces):
        head, tail = piece[:width], piece[-width:] if piece else b""
        table[i, :len(head)] = list(head)
        table[i, 2 * width - len(tail):2 * width] = list(tail)
        table[i, 2 * width + _LENGTH] = len(piece)
        table[i, 2 * width + _CONTAINS] = any(text in piece for text in texts)
    return StopCondition(ids, texts, table)


def padded_table(stop: StopCondition, vocab_size: int) -> np.ndarray | None:
    """The table with rows for ids past the tokenizer's vocabulary (a model's padded embedding
    rows, which decode to nothing): such a token adds no bytes and matches nothing."""
    if stop.table is None or len(stop.table) >= vocab_size:
        return stop.table
    rows = np.full((vocab_size - len(stop.table), stop.table.shape[1]), -1, np.int32)
    rows[:, 2 * history_width(stop.strings):] = 0
    return np.concatenate([stop.table, rows])


def initial_history(batch: int, width: int):
    """The bytes before a completion: none (-1 matches no byte)."""
    return jnp.full((batch, width), -1, jnp.int32)


def advance(token_B, history_BW, table, strings: tuple[bytes, ...]):
    """(whether each row's completion now contains a stop string [B], the new last W bytes)."""
    W = history_BW.shape[1]
    row = jnp.asarray(table)[token_B]
    head, tail = row[:, :W], row[:, W:2 * W]
    length, contains = row[:, 2 * W + _LENGTH], row[:, 2 * W + _CONTAINS]
    window = jnp.concatenate([history_BW, head], axis=1)  # [B, 2W]
    hit = contains > 0
    for text in strings:
        n = len(text)
        starts = np.arange(2 * W - n + 1)  # n <= W + 1, so at least one start
        spans = window[:, starts[:, None] + np.arange(n)]  # [B, starts, n]
        hit |= jnp.any(jnp.all(spans == jnp.asarray(list(text), jnp.int32), axis=-1), axis=-1)
    # The last W bytes of history ++ token: the token's tail if it is W bytes or longer.
    shifted = jnp.take_along_axis(window, jnp.minimum(length, W)[:, None] + jnp.arange(W), 1)
    return hit, jnp.where((length >= W)[:, None], tail, shifted)
