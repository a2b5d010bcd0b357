"""HF checkpoints in and out: logits parity with transformers, exact round trips, clear errors.

The fixtures in tests/fixtures/hf/ were written by transformers itself
(tests/fixtures/make_hf_fixtures.py) together with its float32 logits, so the parity tests run
without torch. TestTransformersLive repeats the comparison against a live transformers and checks
that transformers loads what save_hf writes; it is skipped when torch/transformers are missing.
"""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from r1jax import models
from r1jax.mesh import make_mesh
from r1jax.models.configs import rope_inv_freq

FIXTURES_DIR = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
FIXTURES = ["qwen2_untied", "qwen2_tied", "llama3_scaled", "qwen2_bf16"]
SAVE_LIVE = ["qwen2_untied", "qwen2_tied", "llama3_scaled"]
TOL = 1e-4


def fixture_path(name):
    return os.path.join(FIXTURES_DIR, name)


def expected(name):
    with np.load(os.path.join(fixture_path(name), "expected.npz")) as f:
        return {k: f[k] for k in f.files}


_LOADED = {}


def loaded(name):
    """(cfg, fp32 params) of a fixture, loaded once per session."""
    if name not in _LOADED:
        _LOADED[name] = models.load_hf(fixture_path(name), dtype=jnp.float32)
    return _LOADED[name]


def our_logits(cfg, params, e):
    plain = models.forward(cfg, params, jnp.asarray(e["tokens"]))
    padded = models.forward(cfg, params, jnp.asarray(e["pad_tokens"]),
                            attention_mask_BT=jnp.asarray(e["pad_mask"]))
    return np.asarray(plain), np.asarray(padded)


def assert_logits_match(cfg, params, e, plain_ref, padded_ref):
    plain, padded = our_logits(cfg, params, e)
    mask = e["pad_mask"]
    assert np.abs(plain - plain_ref).max() <= TOL
    assert np.abs(padded - padded_ref)[mask].max() <= TOL  # real positions only


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ committed fixtures


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_logits_match_transformers(name):
    cfg, params = loaded(name)
    e = expected(name)
    assert_logits_match(cfg, params, e, e["logits"], e["pad_logits"])


def test_fixtures_are_what_they_claim():
    """Guards against a regenerated fixture silently losing the feature it exists to test."""
    cfg, params = loaded("qwen2_untied")
    assert not cfg.tie_embeddings and cfg.qkv_bias and cfg.num_kv_heads < cfg.num_heads
    for p in ("q", "k", "v"):
        assert np.abs(np.asarray(params["layers"][0]["attn"][f"{p}_proj"]["bias"])).min() > 0
    assert np.abs(np.asarray(params["final_norm"]["scale"]) - 1).max() > 0.1

    cfg, params = loaded("qwen2_tied")
    assert cfg.tie_embeddings and "lm_head" not in params

    cfg, _ = loaded("llama3_scaled")
    s = cfg.rope_scaling
    assert cfg.family == "llama" and s is not None
    plain = rope_inv_freq(dataclasses.replace(cfg, rope_scaling=None))
    assert not np.allclose(rope_inv_freq(cfg), plain)
    assert expected("llama3_scaled")["tokens"].shape[1] > s.original_max_position

    with safe_open(os.path.join(fixture_path("qwen2_bf16"), "model.safetensors"), "numpy") as f:
        names = f.keys()
        assert {f.get_slice(k).get_dtype() for k in names} == {"BF16"}


def test_bf16_checkpoint_casts_on_load():
    """A bf16 checkpoint loads as bf16 bit-exactly, and as fp32 as the exact upcast."""
    _, p32 = loaded("qwen2_bf16")
    _, p16 = models.load_hf(fixture_path("qwen2_bf16"), dtype=jnp.bfloat16)
    for a, b in zip(jax.tree.leaves(p32), jax.tree.leaves(p16)):
        assert a.dtype == jnp.float32 and b.dtype == jnp.bfloat16
        assert bits_equal(np.asarray(b).astype(np.float32), a)


# ------------------------------------------------------------------ round trips


def random_params(cfg, dtype, seed=0):
    """A params tree of ``cfg`` with every leaf random (numpy, so nothing is compiled)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), dtype),
                        models.abstract_params(cfg, dtype))


ROUND_TRIP_CONFIGS = {
    "qwen2": lambda tied: models.get_config("tiny", tie_embeddings=tied),
    "llama3": lambda tied: models.get_config(
        "tiny", family="llama", qkv_bias=False, rms_eps=1e-5, rope_theta=500_000.0,
        tie_embeddings=tied, rope_scaling=models.Llama3RopeScaling(8.0, 1.0, 4.0, 64)),
}


@pytest.mark.parametrize("family", ["qwen2", "llama3"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_save_load_round_trip_is_exact(tmp_path, family, dtype, tied, sharded):
    cfg = ROUND_TRIP_CONFIGS[family](tied)
    params = random_params(cfg, dtype)
    models.save_hf(cfg, params, str(tmp_path), **({"max_shard_bytes": 8 << 10} if sharded else {}))
    files = sorted(os.listdir(tmp_path))
    if sharded:
        assert "model.safetensors.index.json" in files
        assert sum(f.endswith(".safetensors") for f in files) > 1
    else:
        assert files == ["config.json", "model.safetensors"]
    cfg2, params2 = models.load_hf(str(tmp_path), dtype=dtype)
    assert cfg2 == cfg
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        assert bits_equal(a, b)


# ------------------------------------------------------------------ errors


def copy_fixture(tmp_path, name="qwen2_untied"):
    dst = tmp_path / name
    shutil.copytree(fixture_path(name), dst)
    return dst


def edit_tensors(ckpt, edit):
    file = os.path.join(ckpt, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def edit_config(ckpt, edit):
    file = os.path.join(ckpt, "config.json")
    with open(file) as f:
        hf = json.load(f)
    edit(hf)
    with open(file, "w") as f:
        json.dump(hf, f)


def raises_naming(ckpt, *words):
    with pytest.raises(models.CheckpointError) as info:
        models.load_hf(str(ckpt))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_error_unsupported_architecture(tmp_path):
    ckpt = copy_fixture(tmp_path)
    edit_config(ckpt, lambda hf: hf.update(architectures=["GPT2LMHeadModel"]))
    raises_naming(ckpt, "GPT2LMHeadModel", "config.json")


def test_error_unsupported_rope_type(tmp_path):
    ckpt = copy_fixture(tmp_path, "llama3_scaled")
    edit_config(ckpt, lambda hf: hf["rope_parameters"].update(rope_type="yarn"))
    raises_naming(ckpt, "yarn", "config.json")


def test_error_config_missing_key(tmp_path):
    ckpt = copy_fixture(tmp_path)
    edit_config(ckpt, lambda hf: hf.pop("hidden_size"))
    raises_naming(ckpt, "hidden_size", "config.json")


def test_error_missing_config_json(tmp_path):
    ckpt = copy_fixture(tmp_path)
    os.remove(ckpt / "config.json")
    raises_naming(ckpt, "config.json", str(ckpt))


def test_error_missing_safetensors(tmp_path):
    ckpt = copy_fixture(tmp_path)
    os.remove(ckpt / "model.safetensors")
    raises_naming(ckpt, "model.safetensors", str(ckpt))


def test_error_missing_tensor(tmp_path):
    ckpt = copy_fixture(tmp_path)
    edit_tensors(ckpt, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    raises_naming(ckpt, "model.layers.1.self_attn.k_proj.bias", "missing")


def test_error_missing_lm_head_when_untied(tmp_path):
    ckpt = copy_fixture(tmp_path)
    edit_tensors(ckpt, lambda t: t.pop("lm_head.weight"))
    raises_naming(ckpt, "lm_head.weight")


def test_error_misshapen_tensor(tmp_path):
    ckpt = copy_fixture(tmp_path)
    name = "model.layers.0.mlp.up_proj.weight"
    edit_tensors(ckpt, lambda t: t.update({name: np.zeros((65, 32), np.float32)}))
    raises_naming(ckpt, name, "[65, 32]", "model.safetensors")


def test_error_wrong_dtype(tmp_path):
    ckpt = copy_fixture(tmp_path)
    name = "model.norm.weight"
    edit_tensors(ckpt, lambda t: t.update({name: np.ones(t[name].shape, np.int32)}))
    raises_naming(ckpt, name, "I32", "model.safetensors")


def test_error_unexpected_tensor(tmp_path):
    ckpt = copy_fixture(tmp_path)
    name = "model.layers.2.self_attn.q_proj.weight"
    edit_tensors(ckpt, lambda t: t.update({name: np.zeros((32, 32), np.float32)}))
    raises_naming(ckpt, name)


def test_error_config_with_more_layers_than_tensors_before_tracing(tmp_path):
    """100,000 layers would take far longer to trace than the test runs: the check must come
    from the tensors' names, before anything is traced or allocated."""
    ckpt = copy_fixture(tmp_path)
    edit_config(ckpt, lambda hf: hf.update(num_hidden_layers=100_000))
    raises_naming(ckpt, "num_hidden_layers=100000", "2 layer(s)", "config.json")


def test_error_config_vocab_size_against_embedding(tmp_path):
    ckpt = copy_fixture(tmp_path)
    edit_config(ckpt, lambda hf: hf.update(vocab_size=hf["vocab_size"] * 4))
    raises_naming(ckpt, "vocab_size=", "model.embed_tokens.weight", "of shape")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_error_non_finite_tensor(tmp_path, bad):
    ckpt = copy_fixture(tmp_path)
    name = "model.layers.1.mlp.down_proj.weight"

    def plant(tensors):
        tensors[name] = tensors[name].copy()
        tensors[name][3, 5] = bad

    edit_tensors(ckpt, plant)
    raises_naming(ckpt, name, "NaN or infinity", "model.safetensors")


def test_tied_checkpoint_with_lm_head_copy_loads(tmp_path):
    """Some tied checkpoints also store lm_head.weight (a copy of the embedding); it is ignored."""
    ckpt = copy_fixture(tmp_path, "qwen2_tied")
    edit_tensors(ckpt, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"]}))
    cfg, params = models.load_hf(str(ckpt))
    assert cfg.tie_embeddings and "lm_head" not in params


# ------------------------------------------------------------------ sharded loading


@pytest.mark.parametrize("name", ["qwen2_untied", "llama3_scaled"])
def test_load_with_mesh_places_each_tensor_with_its_sharding(name):
    assert len(jax.devices()) >= 8, "tests/conftest.py should give eight fake CPU devices"
    mesh = make_mesh(data=1, fsdp=2, tensor=4)
    cfg, params = loaded(name)
    cfg_m, sharded = models.load_hf(fixture_path(name), mesh=mesh)
    assert cfg_m == cfg
    want = models.param_shardings(cfg, mesh)
    for (path, a), s, b in zip(jax.tree_util.tree_leaves_with_path(sharded),
                               jax.tree.leaves(want), jax.tree.leaves(params)):
        assert a.sharding == s, (jax.tree_util.keystr(path), a.sharding, s)
        assert bits_equal(a, b), jax.tree_util.keystr(path)
    q = sharded["layers"][0]["attn"]["q_proj"]["kernel"]
    assert q.addressable_shards[0].data.shape == (q.shape[0] // 2, q.shape[1] // 4)
    e = expected(name)
    logits = models.forward(cfg, sharded, jnp.asarray(e["tokens"]))
    assert np.abs(np.asarray(logits) - our_logits(cfg, params, e)[0]).max() <= 1e-5


# ------------------------------------------------------------------ live transformers


@pytest.fixture(scope="module")
def hf():
    reason = ("torch and transformers are not installed; the live transformers checks are "
              "skipped (the committed fixtures still check logits parity)")
    torch = pytest.importorskip("torch", reason=reason)
    transformers = pytest.importorskip("transformers", reason=reason)
    return torch, transformers


def hf_load(hf, path, **kw):
    torch, transformers = hf
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, attn_implementation="eager", output_loading_info=True,
        **kw)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


def hf_logits(hf, model, e):
    torch, _ = hf
    with torch.no_grad():
        plain = model(input_ids=torch.from_numpy(e["tokens"]).long()).logits.numpy()
        mask = torch.from_numpy(e["pad_mask"])
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        padded = model(input_ids=torch.from_numpy(e["pad_tokens"]).long(),
                       attention_mask=mask.long(), position_ids=positions).logits.numpy()
    return plain, padded


class TestTransformersLive:
    @pytest.mark.parametrize("name", FIXTURES)
    def test_transformers_logits_match(self, hf, name):
        cfg, params = loaded(name)
        e = expected(name)
        plain, padded = hf_logits(hf, hf_load(hf, fixture_path(name)), e)
        assert_logits_match(cfg, params, e, plain, padded)

    @pytest.mark.parametrize("name", SAVE_LIVE)
    @pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
    def test_transformers_loads_save_hf_output(self, hf, tmp_path, name, sharded):
        cfg, params = loaded(name)
        models.save_hf(cfg, params, str(tmp_path),
                       **({"max_shard_bytes": 16 << 10} if sharded else {}))
        assert os.path.exists(tmp_path / "model.safetensors.index.json") == sharded
        model = hf_load(hf, tmp_path)
        assert model.config.tie_word_embeddings == cfg.tie_embeddings
        e = expected(name)
        plain, padded = hf_logits(hf, model, e)
        assert_logits_match(cfg, params, e, plain, padded)

    def test_transformers_loads_bf16_save_hf_output(self, hf, tmp_path):
        """bf16 params saved by us are the fixture's bf16 weights: transformers' fp32 logits on
        them are the stored ones."""
        cfg, params16 = models.load_hf(fixture_path("qwen2_bf16"), dtype=jnp.bfloat16)
        models.save_hf(cfg, params16, str(tmp_path))
        with open(tmp_path / "config.json") as f:
            assert json.load(f)["dtype"] == "bfloat16"
        e = expected("qwen2_bf16")
        plain, padded = hf_logits(hf, hf_load(hf, tmp_path), e)
        mask = e["pad_mask"]
        assert np.abs(plain - e["logits"]).max() <= TOL
        assert np.abs(padded - e["pad_logits"])[mask].max() <= TOL
