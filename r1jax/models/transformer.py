"""The decoder: Qwen2/Qwen2.5 and Llama 3.x in one Flax NNX implementation.

Pre-norm blocks of RMSNorm -> grouped-query attention with rope -> RMSNorm -> SwiGLU MLP, with the
numerics of transformers' implementation (norms and softmax in float32, rope in the rotate-half
layout), so that HF checkpoints give the same logits.

The NNX modules only hold the parameter tree. Callers use the pure functions at the bottom:
``init``, ``forward``, ``hidden_states`` and ``forward_cached`` take ``params`` as a plain nested
dict of arrays (``nnx.split`` state as a pure dict) and merge it into the module inside the traced
function.

Shapes: B batch, T query length, S key/cache length, D model width, H query heads, K key/value
heads, G = H // K heads per kv head, E head dim, F MLP width, V vocabulary.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.configs import ModelConfig, rope_inv_freq

# A finite "minus infinity": rows with no valid key (padding queries) stay finite instead of NaN,
# so that garbage in padding rows never reaches real rows through 0 * NaN.
_MASK_VALUE = -1e30
_INIT = nnx.initializers.normal(0.02)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.scale = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...] * x32.astype(x.dtype)


@jax.custom_vjp
def _matmul(x_BXI, kernel_IO):
    return jax.lax.dot_general(x_BXI, kernel_IO, (((x_BXI.ndim - 1,), (0,)), ((), ())))


def _matmul_fwd(x_BXI, kernel_IO):
    return _matmul(x_BXI, kernel_IO), (x_BXI, kernel_IO)


def _matmul_bwd(residuals, dy_BXO):
    """JAX's own transpose of the matmul, except for the kernel's gradient: XLA:CPU's dot wants
    its contracting dimension minor on the left operand, so it copies whichever operand sits
    there into a transposed layout, through a slow strided loop. JAX's form, (dy^T x)^T, puts
    the [tokens, O] output gradient there whatever its width (at toy-1m, the copies of the MLP's
    512-wide gradients were a fifth of the update). Here the narrower of x and dy sits there:
    x^T dy when I <= O, else (dy^T x)^T. Same products and sums; the accumulation order, and so
    the float rounding, may differ."""
    x_BXI, kernel_IO = residuals
    batch = tuple(range(x_BXI.ndim - 1))
    dx = jax.lax.dot_general(dy_BXO, kernel_IO, (((dy_BXO.ndim - 1,), (1,)), ((), ())))
    if kernel_IO.shape[0] <= kernel_IO.shape[1]:
        dkernel = jax.lax.dot_general(x_BXI, dy_BXO, ((batch, batch), ((), ())))
    else:
        dkernel = jax.lax.dot_general(dy_BXO, x_BXI, ((batch, batch), ((), ()))).T
    return dx.astype(x_BXI.dtype), dkernel.astype(kernel_IO.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _linear_dot_general(x, kernel, dimension_numbers, precision=None, **kwargs):
    """nnx.Linear's product (x's last axis with the kernel's first) as ``_matmul``."""
    if dimension_numbers != (((x.ndim - 1,), (0,)), ((), ())) or precision is not None or any(
            v is not None for v in kwargs.values()):
        raise ValueError(f"unexpected Linear product {dimension_numbers}, {precision}, {kwargs}")
    return _matmul(x, kernel)


def _linear(d_in, d_out, bias, dtype, rngs):
    return nnx.Linear(d_in, d_out, use_bias=bias, kernel_init=_INIT, dtype=dtype,
                      param_dtype=dtype, dot_general=_linear_dot_general, rngs=rngs)


def rope_angles(cfg: ModelConfig, positions_BT):
    """(cos, sin) float32 [B, 1, T, E // 2], computed once per forward and shared by all layers."""
    inv_freq = jnp.asarray(rope_inv_freq(cfg), jnp.float32)
    angles = positions_BT.astype(jnp.float32)[:, None, :, None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_BXTE, rope):
    """Rotate-half rope (transformers' layout: the two halves of the head are the pair)."""
    cos, sin = (r.astype(x_BXTE.dtype) for r in rope)
    x1, x2 = jnp.split(x_BXTE, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs):
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.q_proj = _linear(cfg.d_model, q, cfg.qkv_bias, dtype, rngs)
        self.k_proj = _linear(cfg.d_model, kv, cfg.qkv_bias, dtype, rngs)
        self.v_proj = _linear(cfg.d_model, kv, cfg.qkv_bias, dtype, rngs)
        self.o_proj = _linear(q, cfg.d_model, False, dtype, rngs)
        self.cfg = cfg

    def __call__(self, x_BTD, rope, bias_BTS, cache, cache_index):
        cfg = self.cfg
        B, T, _ = x_BTD.shape
        K, E = cfg.num_kv_heads, cfg.head_dim
        G = cfg.num_heads // K
        q = self.q_proj(x_BTD).reshape(B, T, K * G, E).transpose(0, 2, 1, 3)
        k = self.k_proj(x_BTD).reshape(B, T, K, E).transpose(0, 2, 1, 3)
        v = self.v_proj(x_BTD).reshape(B, T, K, E).transpose(0, 2, 1, 3)
        q_BHTE, k_BKTE = apply_rope(q, rope), apply_rope(k, rope)
        k_BKET = jnp.swapaxes(k_BKTE, 2, 3)
        if cache is None:
            k_BKES, v_BKSE = k_BKET, v
        else:
            k_BKES = jax.lax.dynamic_update_slice(cache["k"], k_BKET.astype(cache["k"].dtype),
                                                  (0, 0, 0, cache_index))
            v_BKSE = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype),
                                                  (0, 0, cache_index, 0))
            cache = {"k": k_BKES, "v": v_BKSE}
        q_BKGTE = q_BHTE.reshape(B, K, G, T, E)
        scores = jnp.einsum("bkgte,bkes->bkgts", q_BKGTE, k_BKES.astype(q_BKGTE.dtype),
                            preferred_element_type=jnp.float32) * (E ** -0.5)
        probs = jax.nn.softmax(scores + bias_BTS[:, None, None], axis=-1).astype(v_BKSE.dtype)
        out_BKGTE = jnp.einsum("bkgts,bkse->bkgte", probs, v_BKSE)
        out_BTD = out_BKGTE.reshape(B, K * G, T, E).transpose(0, 2, 1, 3).reshape(B, T, K * G * E)
        return self.o_proj(out_BTD.astype(x_BTD.dtype)), cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs):
        self.gate_proj = _linear(cfg.d_model, cfg.ffn_dim, False, dtype, rngs)
        self.up_proj = _linear(cfg.d_model, cfg.ffn_dim, False, dtype, rngs)
        self.down_proj = _linear(cfg.ffn_dim, cfg.d_model, False, dtype, rngs)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, dtype)
        self.attn = Attention(cfg, dtype, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.rms_eps, dtype)
        self.mlp = MLP(cfg, dtype, rngs)

    def __call__(self, x, rope, bias, cache, cache_index):
        h, cache = self.attn(self.attn_norm(x), rope, bias, cache, cache_index)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), cache


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs):
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_INIT, dtype=dtype,
                               param_dtype=dtype, rngs=rngs)
        self.layers = nnx.List([Block(cfg, dtype, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, dtype)
        if not cfg.tie_embeddings:
            self.lm_head = _linear(cfg.d_model, cfg.vocab_size, False, dtype, rngs)
        self.cfg = cfg

    def __call__(self, tokens_BT, positions_BT, mask_BTS, caches=None, cache_index=0,
                 layers="loop"):
        """(final-normed hidden states [B, T, D], the blocks' updated caches or None).

        ``layers`` is how the blocks run (``_run_blocks``); the sampler's cached passes use the
        plain loop, the training passes whichever mode their memory needs.
        """
        rope = rope_angles(self.cfg, positions_BT)
        # An additive mask, built once for all layers (cheaper than a select in each).
        bias_BTS = jnp.where(mask_BTS, 0.0, _MASK_VALUE).astype(jnp.float32)
        x, caches = _run_blocks(self.layers, self.embed(tokens_BT), rope, bias_BTS, layers,
                                caches, cache_index)
        return self.final_norm(x), caches

    def logits(self, x):
        """float32 logits of hidden states (the tied embedding or the untied head)."""
        out = self.embed.attend(x) if self.cfg.tie_embeddings else self.lm_head(x)
        return out.astype(jnp.float32)


LAYER_MODES = ("loop", "remat", "scan")


def _run_blocks(blocks, x_BTD, rope, bias_BTS, layers: str, caches=None, cache_index=0):
    """(the residual stream after the decoder blocks, their updated KV caches or None), the
    blocks run as ``layers`` says, each reading and extending its cache when ``caches`` is given.

    "loop": an unrolled Python loop; the backward pass keeps every block's activations (its
    norms, q/k/v, [B, H, T, T] attention scores and probabilities, [B, T, F] MLP activations).
    "remat": the same loop with each block under ``jax.checkpoint``: JAX keeps only each block's
    input [B, T, D] and the backward pass recomputes the block (one more forward pass of the
    blocks, about a third more compute). The policy saves nothing inside a block: saving matmul
    outputs (``dots_saveable``) would keep the q/k/v, attention scores and gate/up projections,
    most of what remat is there to drop. The recomputation depends only on the block's input, so
    XLA may schedule it early and hold its results anyway: on XLA:CPU at Qwen2.5-0.5B's shape it
    cut JAX's saved residuals from 7.0 GB to 0.7 GB but the peak by only 3%
    (benchmarks/RESULTS.md).
    "scan": the rematerialised block as the body of a ``lax.scan`` over the layers: XLA compiles
    one block instead of L, and each recomputation runs inside its backward iteration, where it
    cannot be hoisted (28% less peak memory than "loop" at that shape on CPU). The params stay a
    list of per-layer trees (the checkpoint and sharding layout) and are stacked into [L, ...]
    here, inside the trace: a copy of every block's weights per pass (1.4 GB for Qwen2.5-0.5B in
    float32) that lives through the backward pass, and the gradient, which arrives stacked, is
    sliced back into the list, a second copy.
    """
    if layers not in LAYER_MODES:
        raise ValueError(f"layers must be one of {LAYER_MODES}, got {layers!r}")
    graphdef = nnx.graphdef(blocks[0])

    def block(state, x, cache):
        return nnx.merge(graphdef, state)(x, rope, bias_BTS, cache, cache_index)

    if layers != "loop":
        block = jax.checkpoint(block, policy=jax.checkpoint_policies.nothing_saveable)
    states = [nnx.state(b) for b in blocks]
    caches = [None] * len(states) if caches is None else caches
    if layers == "scan":
        def stack(trees):
            return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

        x_BTD, stacked = jax.lax.scan(lambda x, layer: block(layer[0], x, layer[1]), x_BTD,
                                      (stack(states), stack(caches)))
        return x_BTD, None if stacked is None else [jax.tree.map(lambda c: c[i], stacked)
                                                     for i in range(len(states))]
    new_caches = []
    for state, cache in zip(states, caches, strict=True):
        x_BTD, cache = block(state, x_BTD, cache)
        new_caches.append(cache)
    return x_BTD, None if new_caches[0] is None else new_caches


@functools.cache
def _graphdef(cfg: ModelConfig, dtype):
    return nnx.graphdef(nnx.eval_shape(lambda: Transformer(cfg, dtype, nnx.Rngs(0))))


def param_path(key_path) -> str:
    """"layers/3/attn/q_proj/kernel" for a params-tree key path."""
    return "/".join(str(getattr(k, "key", k)) for k in key_path)


def abstract_params(cfg: ModelConfig, dtype=jnp.float32):
    """The params tree as ShapeDtypeStructs (no memory): for shardings and checkpoint loading."""
    model = nnx.eval_shape(lambda: Transformer(cfg, dtype, nnx.Rngs(0)))
    return nnx.to_pure_dict(nnx.state(model))


def init(cfg: ModelConfig, rng, dtype=jnp.float32):
    """Randomly initialised params (normal(0.02) weights, zero biases, unit norms)."""
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)  # a legacy uint32 PRNGKey
    return nnx.to_pure_dict(nnx.state(Transformer(cfg, dtype, nnx.Rngs(rng))))


def _module(cfg, params):
    dtype = params["embed"]["embedding"].dtype
    return nnx.merge(_graphdef(cfg, jnp.dtype(dtype)), params)


def padding_positions(attention_mask_BT):
    """Positions that count only real tokens: 0 at the first real token of each row."""
    return jnp.maximum(jnp.cumsum(attention_mask_BT.astype(jnp.int32), axis=-1) - 1, 0)


def attention_mask(segments_BT):
    """The bool [B, T, S] mask of a causal pass over ``segments_BT`` (bool: True for real tokens;
    or int segment ids, 0 for padding): query t attends to keys s <= t of its own segment, never
    to padding. A bool mask is the one-segment case. Packed documents are segments: none attends
    to another, as if each were alone in its row."""
    T = segments_BT.shape[1]
    segments_BT = segments_BT.astype(jnp.int32)
    causal_TS = jnp.tril(jnp.ones((T, T), bool))
    return (causal_TS[None] & (segments_BT[:, :, None] == segments_BT[:, None, :])
            & (segments_BT[:, None, :] > 0))


def _hidden_states(cfg: ModelConfig, params, tokens_BT, positions_BT, attention_mask_BT,
                   layers: str):
    """(the module, final-normed hidden states [B, T, D]) of a causal pass; see ``forward``."""
    if attention_mask_BT is None:
        attention_mask_BT = jnp.ones(tokens_BT.shape, bool)
    mask_BTS = attention_mask(attention_mask_BT)
    if positions_BT is None:  # the keys a token attends to, itself included, count its position
        positions_BT = jnp.maximum(jnp.sum(mask_BTS, axis=-1, dtype=jnp.int32) - 1, 0)
    model = _module(cfg, params)
    hidden_BTD, _ = model(tokens_BT, positions_BT, mask_BTS, layers=layers)
    return model, hidden_BTD


@functools.partial(jax.jit, static_argnums=0, static_argnames="layers")
def forward(cfg: ModelConfig, params, tokens_BT, positions_BT=None, attention_mask_BT=None, *,
            layers: str = "loop"):
    """Logits float32 [B, T, V] of a causal forward pass over int32 tokens [B, T].

    ``attention_mask_BT`` (True for real tokens) excludes padding from every query's keys; with it
    and no explicit positions, positions count real tokens only (``padding_positions``), so a
    left- or right-padded row gives exactly the logits of the unpadded sequence at its real tokens.
    Int segment ids instead (0 for padding) pack several sequences in a row: each attends only
    to itself and its positions start at 0, so every one gets the logits it would get alone
    (``attention_mask``). Without a mask, positions are 0..T-1. ``layers`` is how the blocks run
    (``_run_blocks``); it only matters to a pass that is differentiated or compiled at scale.
    """
    model, hidden_BTD = _hidden_states(cfg, params, tokens_BT, positions_BT, attention_mask_BT,
                                       layers)
    return model.logits(hidden_BTD)


@functools.partial(jax.jit, static_argnums=0, static_argnames="layers")
def hidden_states(cfg: ModelConfig, params, tokens_BT, positions_BT=None, attention_mask_BT=None,
                  *, layers: str = "loop"):
    """The final-normed hidden states [B, T, D] (in the params' dtype) of the causal pass that
    ``forward`` makes, for a head other than the LM head: a reward model's score.

    Masks, positions and ``layers`` are ``forward``'s. The LM head is not read, so ``params`` may
    lack ``lm_head`` (a reward model's decoder has none): the blocks run in the tied config's
    module, which differs from the untied one only by that head.
    """
    params = {k: v for k, v in params.items() if k != "lm_head"}
    headless = dataclasses.replace(cfg, tie_embeddings=True)
    return _hidden_states(headless, params, tokens_BT, positions_BT, attention_mask_BT,
                          layers)[1]


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.float32):
    """An empty KV cache: per layer keys [B, K, E, S] and values [B, K, S, E].

    Keys are stored transposed so that both attention products are plain batched matmuls with
    the long axis S contiguous: on CPU this made a decode step's attention 3x faster than keys in
    [B, K, S, E] (benchmarks/sampling.py); values keep S before E for the same reason.
    """
    keys = jnp.zeros((batch, cfg.num_kv_heads, cfg.head_dim, length), dtype)
    values = jnp.zeros((batch, cfg.num_kv_heads, length, cfg.head_dim), dtype)
    return [{"k": keys, "v": values} for _ in range(cfg.num_layers)]


def forward_cached(cfg: ModelConfig, params, tokens_BT, positions_BT, cache, cache_index,
                   key_valid_BS):
    """A forward pass over T new tokens that reads and extends a KV cache.

    The new tokens' keys and values are written at cache slots ``cache_index .. cache_index+T-1``;
    query t attends to slots ``<= cache_index + t`` that ``key_valid_BS`` marks as real (the
    caller marks the new slots). Returns (float32 logits [B, V] of the last new token, updated
    cache): only the last position's logits are computed, so a long prefill never materialises
    [B, T, V]. Not jitted on its own: it is traced inside the sampler's jitted loop.
    """
    T, S = tokens_BT.shape[1], key_valid_BS.shape[1]
    query_slot_T = cache_index + jnp.arange(T)
    causal_TS = jnp.arange(S)[None, :] <= query_slot_T[:, None]
    mask_BTS = causal_TS[None] & key_valid_BS[:, None, :]
    model = _module(cfg, params)
    hidden_BTD, cache = model(tokens_BT, positions_BT, mask_BTS, cache, cache_index)
    return model.logits(hidden_BTD[:, -1]), cache


def token_logprobs(cfg: ModelConfig, params, tokens_BT, attention_mask_BT, temperature=1.0,
                   chunk: int = 0, *, layers: str = "loop"):
    """Log-probs of tokens[:, 1:] given their prefixes, and the entropies of those distributions.

    Returns (logprobs float32 [B, T-1], entropy float32 [B, T-1]) under softmax(logits / T), the
    quantities both the GRPO loss (old/new/reference policy) and next-token training need.
    Positions count real tokens only, as in ``forward``, so a left-padded prompt followed by a
    completion gets the sampler's positions.

    ``chunk`` > 0 bounds the logits' memory: the [B, T, V] logits are never held whole. The head,
    the log-softmax and the entropy run over ``chunk`` positions at a time in a ``lax.scan``
    whose body is rematerialised, so the backward pass recomputes each chunk's logits instead of
    keeping them: B x chunk x V floats at a time instead of B x T x V (for Qwen2.5's 151,936
    tokens and T = 4,096, 2.5 GB per row in float32, several times over for the log-softmax and
    its gradient). Equal to the dense computation up to float rounding; 0 keeps the dense one.

    ``layers`` trades compute for the decoder's activation memory: "loop" (the default) keeps
    every block's activations for the backward pass, "remat" keeps only each block's input and
    recomputes the block, "scan" does the same inside a ``lax.scan`` over stacked layer params,
    one compiled block instead of L. Same numbers in every mode up to float reassociation; the
    costs and measurements are at ``_run_blocks``.
    """
    _, hidden_BTD = _hidden_states(cfg, params, tokens_BT, None, attention_mask_BT, layers)
    return _head_logprobs(cfg, params, hidden_BTD[:, :-1], tokens_BT[:, 1:], temperature, chunk)


def continuation_logprobs(cfg: ModelConfig, params, prompts_UP, prompt_mask_UP, tokens_RN,
                          temperature=1.0, chunk: int = 0, *, layers: str = "loop"):
    """``token_logprobs`` of R = U x k continuations, the prompt of each group of k computed once.

    Rows u*k .. u*k+k-1 of ``tokens_RN`` [R, N] continue prompt u of ``prompts_UP`` [U, P]
    (left-padded; ``prompt_mask_UP`` True for real tokens). Returns (logprobs, entropy) float32
    [R, N] of every continuation token given its prompt and the tokens before it: what
    ``token_logprobs`` gives for the concatenated rows at their last N positions, up to float
    rounding, and its gradient too (the prompt's, summed over its k rows by the repeat's
    transpose).

    The prompt runs through the blocks once, on U rows, leaving its keys and values per layer; the
    continuations run on R rows and attend to those (repeated k times) and to their own causal
    prefix. For GRPO's G samples of a ~100-token prompt that halves the positions of an update
    (``r1jax.rl``). ``chunk`` and ``layers`` are ``token_logprobs``'s.
    """
    (U, P), (R, N) = prompts_UP.shape, tokens_RN.shape
    if R % U:
        raise ValueError(f"{R} continuations do not split evenly over {U} prompts")
    k = R // U
    model = _module(cfg, params)
    prompt_hidden_UPD, caches = model(
        prompts_UP, padding_positions(prompt_mask_UP), attention_mask(prompt_mask_UP),
        init_cache(cfg, U, P, params["embed"]["embedding"].dtype), 0, layers)

    def repeat(x):
        return jnp.repeat(x, k, axis=0)

    def room_for_continuations(cache):  # the prompt's keys and values, then N empty slots
        return {"k": jnp.pad(repeat(cache["k"]), ((0, 0), (0, 0), (0, 0), (0, N))),
                "v": jnp.pad(repeat(cache["v"]), ((0, 0), (0, 0), (0, N), (0, 0)))}

    key_valid_RS = jnp.concatenate([repeat(prompt_mask_UP), jnp.ones((R, N), bool)], axis=1)
    causal_NS = jnp.arange(P + N)[None, :] <= P + jnp.arange(N)[:, None]
    positions_RN = repeat(jnp.sum(prompt_mask_UP, -1, dtype=jnp.int32))[:, None] + jnp.arange(N)
    hidden_RND, _ = model(tokens_RN, positions_RN, causal_NS[None] & key_valid_RS[:, None, :],
                          [room_for_continuations(c) for c in caches], P, layers)
    # Token t is predicted from the position before it: the prompt's last one for t = 0.
    hidden_RND = jnp.concatenate([repeat(prompt_hidden_UPD[:, -1:]), hidden_RND[:, :-1]], 1)
    return _head_logprobs(cfg, params, hidden_RND, tokens_RN, temperature, chunk)


def _head_logprobs(cfg: ModelConfig, params, hidden_BTD, targets_BT, temperature, chunk: int):
    """(logprobs, entropy) float32 [B, T] of ``targets_BT`` under the LM head's distribution at
    ``hidden_BTD``: dense, or ``chunk`` positions at a time (``token_logprobs``)."""
    if not chunk:
        logits = _module(cfg, params).logits(hidden_BTD)
        return _logprobs_and_entropy(logits, targets_BT, temperature)
    head_DV = (params["embed"]["embedding"].T if cfg.tie_embeddings
               else params["lm_head"]["kernel"])
    B, T = targets_BT.shape
    n = -(-T // chunk)
    pad = ((0, 0), (0, n * chunk - T))

    def chunks(x):  # [B, T, ...] -> [n, B, chunk, ...], padded at the end
        x = jnp.pad(x, pad + ((0, 0),) * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(B, n, chunk, *x.shape[2:]), 1, 0)

    @jax.checkpoint
    def one_chunk(hidden_BCD, targets_BC):
        logits = jnp.dot(hidden_BCD, head_DV.astype(hidden_BCD.dtype)).astype(jnp.float32)
        return _logprobs_and_entropy(logits, targets_BC, temperature)

    _, (chosen, entropy) = jax.lax.scan(lambda carry, x: (carry, one_chunk(*x)), None,
                                        (chunks(hidden_BTD), chunks(targets_BT)))

    def unchunk(x):  # [n, B, chunk] -> [B, T]
        return jnp.moveaxis(x, 0, 1).reshape(B, n * chunk)[:, :T]

    return unchunk(chosen), unchunk(entropy)


def _logprobs_and_entropy(logits_BTV, targets_BT, temperature):
    logp_BTV = jax.nn.log_softmax(logits_BTV / temperature, axis=-1)
    chosen = jnp.take_along_axis(logp_BTV, targets_BT[..., None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp_BTV) * logp_BTV, axis=-1)
    return chosen, entropy
