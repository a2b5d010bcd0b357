"""The on-device group sampler: prefill each prompt once, decode G completions in one jitted loop.

``generate`` pads the ragged prompts on the left to a bucketed length (so a run compiles the
sampler once per bucket, not once per prompt length), prefills them into a preallocated KV cache
[B, K, S, E], repeats the cache G times (rows b*G .. b*G+G-1 are prompt b's samples), then runs a
``lax.while_loop`` that decodes one token for every row per step and exits as soon as every row
has stopped (a stop token, or a stop string in its text: ``r1jax.stopping``) or
``max_new_tokens`` is reached.

The returned logprobs are those of the sampled tokens under the distribution they were drawn from
with the temperature applied and before top-p/top-k truncation: exactly what the training forward
pass computes for the same tokens, so they serve as GRPO's old-policy logprobs.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax import multihost
from r1jax.mesh import data_parallel_size
from r1jax.models import ModelConfig, forward_cached, init_cache, padding_positions
from r1jax.models.sharding import BATCH_AXES
from r1jax.stopping import (StopCondition, advance, history_width, initial_history,
                             padded_table)

MIN_PROMPT_BUCKET = 16
TOP_P_SLACK = 1e-6  # top-p's tolerance for float32 rounding (`truncation_mask`)


class SampleOutput(NamedTuple):
    tokens: jax.Array  # int32 [B*G, N], pad_id after the stop token
    logprobs: jax.Array  # float32 [B*G, N], 0 where mask is False
    mask: jax.Array  # bool [B*G, N], True for generated tokens, the stopping token included
    lengths: jax.Array  # int32 [B*G]
    truncated: jax.Array  # bool [B*G]: N tokens generated and the row did not stop
    prompts: jax.Array | None = None  # int32 [B, P]: the prompts as the sampler saw them,
    prompt_mask: jax.Array | None = None  # left-padded to a bucket, and bool [B, P] (real tokens)


def prompt_bucket(length: int) -> int:
    """The padded prompt length: the next power of two, at least MIN_PROMPT_BUCKET."""
    return max(MIN_PROMPT_BUCKET, 1 << max(0, length - 1).bit_length())


def truncation_mask(logits_BV, top_p: float, top_k: int):
    """Which tokens survive top-k then top-p truncation (bool [B, V]); the argmax always does.

    top-k keeps the ``top_k`` most likely tokens and every token tied with the k-th. top-p then
    renormalises what top-k kept and keeps the smallest set of most likely tokens whose
    probability reaches ``top_p``, and every token tied with the least likely of them.

    The boundary: a set reaches ``top_p`` when its mass is at least ``top_p - TOP_P_SLACK``.
    float32 probabilities and their running sum carry rounding errors of about 1e-7, so without
    the slack a ``top_p`` equal to the mass of the n most likely tokens (0.55 for probabilities
    0.30, 0.25, ...: 0.54999995 in float32) would keep n + 1 of them; with it, it keeps n, as in
    exact arithmetic. Only a ``top_p`` within TOP_P_SLACK of such a sum is affected.
    """
    keep = jnp.ones(logits_BV.shape, bool)
    if top_k > 0:
        kth_largest = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        keep &= logits_BV >= kth_largest
    if top_p < 1.0:
        probs = jax.nn.softmax(jnp.where(keep, logits_BV, -jnp.inf), axis=-1)
        sorted_desc = -jnp.sort(-probs, axis=-1)
        mass_before = jnp.cumsum(sorted_desc, axis=-1) - sorted_desc
        # The smallest kept probability: the last sorted entry whose preceding mass has not
        # reached top_p (the most likely entry at least).
        n_kept = jnp.maximum(
            jnp.sum(mass_before < top_p - TOP_P_SLACK, axis=-1, keepdims=True), 1)
        threshold = jnp.take_along_axis(sorted_desc, n_kept - 1, axis=-1)
        keep &= probs >= threshold
    return keep


def sample_token(logits_BV, rng, temperature: float, top_p: float, top_k: int):
    """(token [B], its log-prob under softmax(logits / T) before truncation [B]); at temperature
    0 (greedy) the argmax and its log-prob under softmax(logits).

    Draws by inverting the cumulative distribution with one uniform number per row, rather than
    Gumbel-argmax with one per vocabulary entry: the same distribution, and on CPU the random
    bits were the most expensive part of a decode step for small models.
    """
    if temperature == 0.0:
        token = jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
        logprobs_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    else:
        scaled = logits_BV / temperature
        logprobs_BV = jax.nn.log_softmax(scaled, axis=-1)
        probs = jnp.exp(logprobs_BV)
        if top_p < 1.0 or top_k > 0:
            probs = jnp.where(truncation_mask(scaled, top_p, top_k), probs, 0.0)
        cdf_BV = jnp.cumsum(probs, axis=-1)
        # u in (0, total]: a token of probability zero is never the first with cdf >= u.
        u_B1 = (1.0 - jax.random.uniform(rng, (logits_BV.shape[0], 1))) * cdf_BV[:, -1:]
        token = jnp.sum(cdf_BV < u_B1, axis=-1, dtype=jnp.int32)
        token = jnp.minimum(token, logits_BV.shape[-1] - 1)  # u above the rounded total
    return token, jnp.take_along_axis(logprobs_BV, token[:, None], axis=-1)[:, 0]


def _constrain(x, mesh, spec):
    return x if mesh is None else jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


@functools.partial(jax.jit, static_argnames=(
    "cfg", "num_samples", "max_new_tokens", "temperature", "top_p", "top_k", "stop_ids",
    "stop_strings", "pad_id", "mesh"))
def _generate(cfg: ModelConfig, params, prompts_BP, prompt_mask_BP, rng, stop_table, *,
              num_samples, max_new_tokens, temperature, top_p, top_k, stop_ids, stop_strings,
              pad_id, mesh):
    B, P_len = prompts_BP.shape
    G, N = num_samples, max_new_tokens
    S = P_len + N
    dtype = params["embed"]["embedding"].dtype
    batch_spec = P(BATCH_AXES)
    cache_spec = P(BATCH_AXES, "tensor" if mesh is not None
                   and cfg.num_kv_heads % mesh.shape["tensor"] == 0 else None)

    # Prefill once per prompt, then repeat the cache for the G samples.
    key_valid_BS = jnp.pad(prompt_mask_BP, ((0, 0), (0, N)))
    cache = init_cache(cfg, B, S, dtype)
    logits_BV, cache = forward_cached(cfg, params, prompts_BP, padding_positions(prompt_mask_BP),
                                      cache, 0, key_valid_BS)
    repeat = functools.partial(jnp.repeat, repeats=G, axis=0)
    cache = jax.tree.map(lambda c: _constrain(repeat(c), mesh, cache_spec), cache)
    logits = _constrain(repeat(logits_BV), mesh, batch_spec)
    key_valid = _constrain(repeat(key_valid_BS), mesh, batch_spec)
    next_position = repeat(jnp.sum(prompt_mask_BP, axis=-1).astype(jnp.int32))
    BG = B * G
    stop_ids = jnp.asarray(stop_ids, jnp.int32)

    def cond(state):
        t, *_, done = state
        return (t < N) & ~jnp.all(done)

    def body(state):
        t, tokens, logprobs, logits, cache, key_valid, lengths, history, done = state
        token, logprob = sample_token(logits, jax.random.fold_in(rng, t), temperature, top_p,
                                      top_k)
        token = jnp.where(done, pad_id, token)
        tokens = tokens.at[:, t].set(token)
        logprobs = logprobs.at[:, t].set(jnp.where(done, 0.0, logprob))
        lengths = jnp.where(done, lengths, t + 1)
        stops = jnp.isin(token, stop_ids)
        if stop_strings:
            text_stops, history = advance(token, history, stop_table, stop_strings)
            stops |= text_stops
        done = done | stops
        key_valid = key_valid.at[:, P_len + t].set(True)
        logits, cache = forward_cached(cfg, params, token[:, None], (next_position + t)[:, None],
                                       cache, P_len + t, key_valid)
        return t + 1, tokens, logprobs, logits, cache, key_valid, lengths, history, done

    width = history_width(stop_strings)
    init_state = (jnp.int32(0), jnp.full((BG, N), pad_id, jnp.int32),
                  jnp.zeros((BG, N), jnp.float32), logits, cache, key_valid,
                  jnp.zeros((BG,), jnp.int32), initial_history(BG, width), jnp.zeros((BG,), bool))
    _, tokens, logprobs, *_, lengths, _, done = jax.lax.while_loop(cond, body, init_state)
    # A row is generated up to and including the token that stopped it, or to the last step.
    mask = jnp.arange(N)[None, :] < lengths[:, None]
    return SampleOutput(tokens, logprobs, mask, lengths, ~done)


def pad_prompts(prompts, length: int, pad_id: int):
    """Left-pad ragged token lists to ``length``: (tokens int32 [B, length], mask bool)."""
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    mask = np.zeros((len(prompts), length), bool)
    for i, prompt in enumerate(prompts):
        if len(prompt):
            tokens[i, -len(prompt):] = prompt
            mask[i, -len(prompt):] = True
    return tokens, mask


def generate(cfg: ModelConfig, params, prompts, rng, num_samples: int = 1,
             max_new_tokens: int = 256, temperature: float = 1.0, top_p: float = 1.0,
             top_k: int = 0, stop: StopCondition = StopCondition(), pad_id: int = 0,
             mesh=None) -> SampleOutput:
    """Sample ``num_samples`` completions for each prompt (a list of token-id lists), each
    until ``stop`` (``stopping.stop_condition``) holds or ``max_new_tokens`` are generated.

    With a mesh, the batch is split over its data axes (``params`` should already be placed with
    ``models.shard_params``); the result equals the unsharded one for the same ``rng``. The number
    of prompts times ``num_samples`` must then be divisible by the data-parallel size. In a run
    over several processes, ``prompts`` are this process's rows of the batch
    (`multihost.row_slice`) and every process calls this together; the outputs are global
    arrays whose rows b*G .. b*G+G-1 live where prompt b does (`multihost.local_rows`).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt and no empty prompt")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or max_new_tokens < 1:
        raise ValueError(f"invalid sampling settings: temperature={temperature}, top_p={top_p}, "
                         f"top_k={top_k}, max_new_tokens={max_new_tokens}")
    longest = max(multihost.allgather(max(len(p) for p in prompts)))
    if longest + max_new_tokens > cfg.max_position:
        raise ValueError(f"prompt ({longest}) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"model's max_position {cfg.max_position}")
    tokens, mask = pad_prompts(prompts, prompt_bucket(longest), pad_id)
    if mesh is not None:
        _, count = multihost.row_block(mesh, data_parallel_size(mesh))
        if (len(prompts) * count) % data_parallel_size(mesh):
            raise ValueError(f"{len(prompts) * count} prompts do not split over the mesh's data "
                             f"axes ({data_parallel_size(mesh)} ways)")
        tokens, mask = multihost.put_rows(mesh, (tokens, mask))
    out = _generate(cfg, params, tokens, mask, rng, padded_table(stop, cfg.vocab_size),
                    num_samples=num_samples, max_new_tokens=max_new_tokens,
                    temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                    stop_ids=tuple(int(s) for s in stop.token_ids),
                    stop_strings=tuple(stop.strings), pad_id=int(pad_id), mesh=mesh)
    return out._replace(prompts=tokens, prompt_mask=mask)
