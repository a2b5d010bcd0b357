"""The decoder against independent references: published sizes, unpadded and uncached passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import models
from r1jax.mesh import make_mesh

# Published parameter counts (model cards / config-derived totals), in billions.
PUBLISHED_BILLIONS = {
    "qwen2.5-0.5b": 0.494, "qwen2.5-1.5b": 1.54, "qwen2.5-7b": 7.62, "qwen2.5-math-1.5b": 1.54,
    "qwen2.5-math-7b": 7.62, "llama-3.2-1b": 1.24, "llama-3.1-8b": 8.03,
}

TINY_LLAMA = models.get_config("tiny", family="llama", qkv_bias=False, tie_embeddings=True,
                               rope_scaling=models.Llama3RopeScaling(4.0, 1.0, 4.0, 16))


@pytest.mark.parametrize("name", sorted(PUBLISHED_BILLIONS))
def test_published_parameter_counts(name):
    billions = models.num_params(models.get_config(name)) / 1e9
    assert float(f"{billions:.3g}") == PUBLISHED_BILLIONS[name]


@pytest.mark.parametrize("name", ["tiny", "toy-1m"])
def test_num_params_counts_the_initialised_arrays(name):
    cfg = models.get_config(name)
    shapes = models.abstract_params(cfg)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == models.num_params(cfg)


@pytest.mark.parametrize("length", [16, 128])
def test_forward_flops_match_xla_count_of_a_forward_pass(length):
    # The dense forward computes every (query, key) pair and logits at every position; XLA's
    # count adds the elementwise work (norms, rope, softmax) that model flops leave out.
    cfg = models.get_config("toy-1m", d_model=256, ffn_dim=1024, head_dim=64)
    params = models.abstract_params(cfg)
    tokens = jax.ShapeDtypeStruct((2, length), jnp.int32)
    cost = jax.jit(lambda p, t: models.forward(cfg, p, t)).lower(params, tokens).compile()
    cost = cost.cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    model = models.forward_flops(cfg, 2 * length, 2 * length * length, 2 * length)
    assert model <= xla <= 1.02 * model


def test_unknown_config_and_bad_fields_are_named():
    with pytest.raises(KeyError, match="qwen9"):
        models.get_config("qwen9")
    with pytest.raises(ValueError, match="num_kv_heads"):
        models.get_config("tiny", num_kv_heads=3)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request):
    cfg = models.get_config("tiny") if request.param == "qwen2" else TINY_LLAMA
    params = models.init(cfg, jax.random.key(0))
    # Non-trivial biases and norms, so that their handling is exercised.
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape),
                          params)
    return cfg, params


def _ragged(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 250, size=n).tolist() for n in (5, 11, 1, 8)]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_unpadded_rows(model, side):
    cfg, params = model
    rows = _ragged()
    width = max(map(len, rows)) + 2
    tokens = np.zeros((len(rows), width), np.int32)
    mask = np.zeros_like(tokens, bool)
    for i, row in enumerate(rows):
        where = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        tokens[i, where], mask[i, where] = row, True
    batched = np.asarray(models.forward(cfg, params, tokens, attention_mask_BT=mask))
    for i, row in enumerate(rows):
        alone = np.asarray(models.forward(cfg, params, jnp.asarray([row])))[0]
        np.testing.assert_allclose(batched[i][mask[i]], alone, atol=1e-5, rtol=1e-5)


def test_packed_segments_equal_each_sequence_alone(model):
    """Sequences packed into rows with segment ids (0: padding) give the logits each gets alone,
    in both the dense and the chunked log-prob paths."""
    cfg, params = model
    rows = _ragged()
    packed = [rows[0] + rows[1], rows[2] + rows[3] + [0, 0, 0, 0, 0, 0, 0]]
    segments = np.array([[1] * 5 + [2] * 11, [1] + [2] * 8 + [0] * 7], np.int32)
    tokens = np.asarray(packed, np.int32)
    logits = np.asarray(models.forward(cfg, params, tokens, attention_mask_BT=segments))
    dense = models.token_logprobs(cfg, params, tokens, segments)[0]
    chunked = models.token_logprobs(cfg, params, tokens, segments, chunk=4)[0]
    for b, s in [(0, 1), (0, 2), (1, 1), (1, 2)]:
        where = segments[b] == s
        row = tokens[b][where]
        alone = np.asarray(models.forward(cfg, params, jnp.asarray([row])))[0]
        np.testing.assert_allclose(logits[b][where], alone, atol=1e-5, rtol=1e-5)
        logp = jax.nn.log_softmax(alone[:-1], axis=-1)
        expected = np.take_along_axis(np.asarray(logp), row[1:, None], -1)[:, 0]
        within = np.flatnonzero(where)[:-1]  # targets inside the segment
        for got in (dense, chunked):
            np.testing.assert_allclose(np.asarray(got)[b][within], expected, atol=1e-5)


def test_cached_decoding_equals_full_forward(model):
    """Prefill a left-padded prompt, then feed tokens one at a time through the cache."""
    cfg, params = model
    prompt, continuation = [5, 9, 17, 3], [40, 41, 42, 7, 99]
    pad = 3
    full = np.asarray(models.forward(cfg, params, jnp.asarray([prompt + continuation])))[0]
    S = pad + len(prompt) + len(continuation)
    tokens = jnp.asarray([[0] * pad + prompt])
    key_valid = jnp.zeros((1, S), bool).at[0, pad:pad + len(prompt)].set(True)
    cache = models.init_cache(cfg, 1, S)
    positions = models.padding_positions(key_valid[:, :pad + len(prompt)])
    logits, cache = models.forward_cached(cfg, params, tokens, positions, cache, 0, key_valid)
    np.testing.assert_allclose(logits[0], full[len(prompt) - 1], atol=1e-5)
    for i, tok in enumerate(continuation):
        slot = pad + len(prompt) + i
        key_valid = key_valid.at[0, slot].set(True)
        logits, cache = models.forward_cached(cfg, params, jnp.asarray([[tok]]),
                                              jnp.asarray([[len(prompt) + i]]), cache, slot,
                                              key_valid)
        np.testing.assert_allclose(logits[0], full[len(prompt) + i], atol=1e-5)


def test_sharded_forward_equals_single_device(model):
    cfg, params = model
    assert jax.device_count() == 8, "tests/conftest.py should provide eight CPU devices"
    mesh = make_mesh(data=1, fsdp=2, tensor=4)
    sharded = models.shard_params(cfg, params, mesh)
    specs = {s.spec for s in jax.tree.leaves(jax.tree.map(lambda x: x.sharding, sharded))}
    assert any("tensor" in str(s) for s in specs) and any("fsdp" in str(s) for s in specs)
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 250, (4, 12)), jnp.int32)
    tokens_sharded = jax.device_put(tokens, models.batch_sharding(mesh))
    expected = models.forward(cfg, params, tokens)
    got = models.forward(cfg, sharded, tokens_sharded)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5, rtol=1e-5)


def test_bf16_params_give_float32_logits_close_to_fp32(model):
    cfg, params = model
    tokens = jnp.asarray([[3, 1, 4, 1, 5, 9, 2, 6]])
    fp32 = models.forward(cfg, params, tokens)
    bf16 = models.forward(cfg, jax.tree.map(lambda x: x.astype(jnp.bfloat16), params), tokens)
    assert bf16.dtype == jnp.float32
    # bf16 keeps 8 significant bits. Measured max |bf16 - fp32| over both families x 4 inits x
    # 2 token sequences: 0.012-0.021 (here 0.014 qwen2, 0.016 llama; logits std ~0.45), RMS
    # 0.0032-0.0048. Dropping the q bias in bf16 alone moves qwen2's by 0.040 (RMS 0.0094).
    error = np.abs(np.asarray(bf16) - np.asarray(fp32))
    assert error.max() < 0.03 and np.sqrt(np.mean(error**2)) < 0.006, error.max()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("width_in,width_out", [(6, 3), (3, 6)])  # both forms of the backward
def test_linear_layers_gradients_equal_the_numpy_formulas(dtype, width_in, width_out):
    """The Linear layers' own backward pass (transformer._matmul): gradients of sum(sin(x W))
    against float64 numpy, for a [B, T, I] input."""
    from r1jax.models import transformer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, width_in))
    w = rng.normal(size=(width_in, width_out)) / width_in ** 0.5

    def loss(x, w):
        return jnp.sum(jnp.sin(transformer._matmul(x, w).astype(jnp.float32)))

    dx, dw = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x, dtype), jnp.asarray(w, dtype))
    assert dx.dtype == dw.dtype == dtype and dx.shape == x.shape and dw.shape == w.shape
    dy = np.cos(x @ w)
    tol = 1e-5 if dtype == jnp.float32 else 5e-2
    np.testing.assert_allclose(np.asarray(dx, np.float64), dy @ w.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(dw, np.float64),
                               x.reshape(-1, width_in).T @ dy.reshape(-1, width_out),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("tie", [True, False])
def test_chunked_logprobs_equal_the_dense_ones_in_value_and_gradient(tie):
    cfg = models.get_config("tiny", vocab_size=97, tie_embeddings=tie)
    params = models.init(cfg, jax.random.key(1))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 97, (3, 12)), jnp.int32)
    mask = jnp.asarray(np.arange(12)[None] >= np.array([[0], [3], [5]]))  # left padding
    weights = jnp.asarray(rng.normal(size=(2, 3, 11)), jnp.float32)

    def objective(p, chunk):
        logprobs, entropy = models.token_logprobs(cfg, p, tokens, mask, 0.7, chunk=chunk)
        return jnp.sum(weights[0] * logprobs + weights[1] * entropy), (logprobs, entropy)

    (_, dense), dense_grad = jax.value_and_grad(objective, has_aux=True)(params, 0)
    for chunk in (5, 11, 16):  # 11 positions: a ragged last chunk, one chunk, one padded chunk
        (_, chunked), grad = jax.value_and_grad(objective, has_aux=True)(params, chunk)
        for a, b in zip(chunked, dense):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     grad, dense_grad)


@pytest.mark.parametrize("layers,chunk,tie", [("loop", 0, True), ("remat", 0, False),
                                              ("scan", 3, True), ("loop", 4, False)])
def test_continuations_of_a_shared_prompt_equal_the_full_pass_in_value_and_gradient(
        layers, chunk, tie):
    """Each prompt run once for its k continuations gives what the full pass over prompt +
    continuation gives at the continuation's positions: log-probs, entropies, and the gradient,
    in which each prompt's part is summed over its k rows."""
    cfg = models.get_config("tiny", vocab_size=97, tie_embeddings=tie)
    params = models.init(cfg, jax.random.key(1))
    rng = np.random.default_rng(0)
    U, P, k, N = 3, 7, 4, 5
    prompts = rng.integers(1, 97, (U, P)).astype(np.int32)
    prompt_mask = np.arange(P)[None] >= np.array([[3], [0], [1]])  # left padding
    tokens = rng.integers(1, 97, (U * k, N)).astype(np.int32)
    full = np.concatenate([np.repeat(prompts, k, 0), tokens], 1)
    full_mask = np.concatenate([np.repeat(prompt_mask, k, 0), np.ones((U * k, N), bool)], 1)
    weights = jnp.asarray(rng.normal(size=(2, U * k, N)), jnp.float32)

    def objective(p, shared):
        if shared:
            outputs = models.continuation_logprobs(cfg, p, prompts, prompt_mask, tokens, 0.7,
                                                   chunk, layers=layers)
        else:  # the reference: every row's prompt recomputed, uncached, in the plain loop
            outputs = [x[:, P - 1:] for x in models.token_logprobs(cfg, p, full, full_mask, 0.7)]
        return jnp.sum(weights[0] * outputs[0] + weights[1] * outputs[1]), outputs

    (_, shared), shared_grad = jax.value_and_grad(objective, has_aux=True)(params, True)
    (_, reference), grad = jax.value_and_grad(objective, has_aux=True)(params, False)
    for a, b in zip(shared, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 shared_grad, grad)  # gradients up to ~4: float reassociation only
    with pytest.raises(ValueError, match="12 continuations do not split evenly over 5"):
        models.continuation_logprobs(cfg, params, np.ones((5, P), np.int32),
                                     np.ones((5, P), bool), tokens)
