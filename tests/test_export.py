"""export: a run's policy as an HF checkpoint: the params of the step asked (not the reference's),
the run's tokenizer files, a write that is complete or absent, one-sentence errors, the command
line, and transformers' logits on the result where torch and transformers are installed."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import export, main, models, policy, tokenizers
from r1jax.checkpoint import Checkpointer
from r1jax.data import CorpusConfig, corpus_documents
from r1jax.optim import make_optimizer

TESTS = os.path.dirname(os.path.abspath(__file__))
SMOKE_CONFIG = os.path.join(os.path.dirname(TESTS), "experiments", "r1_zero_toy.py")
CFG = models.get_config("tiny", vocab_size=64)
TEXT = "<think>3 + 4 = 7, wait</think> <answer>7</answer>"
# A tokenizer.json of 64 words, in the layout of an HF checkpoint's.
HF_TOKENIZER = {"version": "1.0", "added_tokens": [], "normalizer": None,
                "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
                "model": {"type": "WordLevel", "unk_token": "<unk>",
                          "vocab": {w: i for i, w in enumerate(
                              ["<unk>", "</s>", *(f"w{i}" for i in range(62))])}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An r1jax workdir as `python -m r1jax.main --config=experiments/r1_zero_toy.py:smoke`
    leaves it (config.json, tokenizer.model, checkpoints of policy, reference and optimizer) at
    steps 1 and 2, with the policy params of each step."""
    workdir = tmp_path_factory.mktemp("run")
    config = main.load_experiment(SMOKE_CONFIG, "smoke")
    config.model.update(name="tiny", vocab_size=CFG.vocab_size)
    (workdir / "config.json").write_text(json.dumps(config.to_dict(), default=str))
    tokenizers.train_sentencepiece(corpus_documents(0, 50, CorpusConfig()),
                                   workdir / "tokenizer", 400)
    reference = models.init(CFG, jax.random.key(0))
    policies = {step: models.init(CFG, jax.random.key(step)) for step in (1, 2)}
    ckpt = Checkpointer(str(workdir))
    for step, params in policies.items():
        ckpt.save(step, {"params": params, "ref_params": reference,
                         "opt_state": make_optimizer(1e-3, 10).init(params)},
                  {"step": step, "data": {}, "nonfinite_in_row": 0})
    ckpt.close()
    return workdir, policies


def assert_params_equal(actual, expected):
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


def encodings(path):
    tokenizer = tokenizers.load_tokenizer(path)
    return tokenizer.encode(TEXT), tokenizer.eos_id


def test_export_writes_the_policy_of_the_step_asked_and_the_runs_tokenizer(run, tmp_path):
    workdir, policies = run
    for step, out in [(1, tmp_path / "step1"), (None, tmp_path / "latest")]:
        assert export.export(workdir, out, step=step) == out
        cfg, params = models.load_hf(str(out))
        assert cfg == CFG
        assert_params_equal(params, policies[step or 2])  # the policy, not the reference
        assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.model"]
        assert encodings(out) == encodings(policy.tokenizer_source(workdir))
    assert sorted(os.listdir(tmp_path)) == ["latest", "step1"]  # no .partial left


def test_bfloat16_export(run, tmp_path):
    workdir, policies = run
    export.export(workdir, tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    _, params = models.load_hf(str(tmp_path / "bf16"), dtype=jnp.bfloat16)
    assert_params_equal(params, jax.tree.map(lambda x: x.astype(jnp.bfloat16), policies[2]))


def write_hf_tokenizer(directory):
    directory.mkdir()
    (directory / "tokenizer.json").write_text(json.dumps(HF_TOKENIZER))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": 1}))
    (directory / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    (directory / "README.md").write_text("not a tokenizer file")


def test_an_hf_tokenizer_is_exported_with_the_files_beside_it(run, tmp_path):
    workdir, _ = run
    write_hf_tokenizer(tmp_path / "hf_tokenizer")
    config_file = workdir / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "tokenizer": str(tmp_path / "hf_tokenizer")}))
    try:
        export.export(workdir, tmp_path / "out")
    finally:
        config_file.write_text(json.dumps(config))
    assert sorted(os.listdir(tmp_path / "out")) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json"]
    assert encodings(tmp_path / "out") == encodings(tmp_path / "hf_tokenizer")


def test_a_tokenizer_under_another_name_is_exported_under_the_name_hf_loaders_read(tmp_path):
    write_hf_tokenizer(tmp_path / "a")
    (tmp_path / "a" / "sp.model").write_bytes(b"x")
    assert set(export.tokenizer_files(tmp_path / "a")) == {
        "tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"}
    files = export.tokenizer_files(tmp_path / "a" / "sp.model")  # a run's config names the file
    assert files["tokenizer.model"] == tmp_path / "a" / "sp.model" and "tokenizer.json" not in files
    lone = tmp_path / "b" / "sp.model"  # load_tokenizer takes a lone *.model in a directory
    lone.parent.mkdir()
    lone.write_bytes(b"x")
    assert export.tokenizer_files(lone.parent) == {"tokenizer.model": lone}
    (lone.parent / "sp2.model").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="not a tokenizer.json"):
        export.tokenizer_files(lone.parent)


def test_a_killed_export_leaves_only_a_partial_directory_that_the_next_one_clears(
        run, tmp_path, monkeypatch):
    workdir, policies = run
    out = tmp_path / "out"

    def killed(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(export.shutil, "copyfile", killed)  # after the weights, before the tokenizer
        with pytest.raises(KeyboardInterrupt):
            export.export(workdir, out)
    assert not out.exists() and (tmp_path / "out.partial" / "model.safetensors").exists()
    out.mkdir()  # an empty directory is fine
    export.export(workdir, out, step=1)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert_params_equal(models.load_hf(str(out))[1], policies[1])


def test_errors_name_the_problem(run, tmp_path):
    workdir, _ = run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="full exists and is not empty"):
        export.export(workdir, tmp_path / "full")
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 3; its steps are 1, 2"):
        export.export(workdir, tmp_path / "out", step=3)
    with pytest.raises(FileNotFoundError, match="is not an r1jax workdir"):
        export.export(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="'float16' is not one of float32, bfloat16"):
        export.export(workdir, tmp_path / "out", dtype="float16")
    assert sorted(os.listdir(tmp_path)) == ["full"]
    models.save_hf(CFG, models.init(CFG, jax.random.key(0)), str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="is not a workdir"):
        policy.load_policy(tmp_path / "hf", step=1)


def test_command_line(run, tmp_path, capsys):
    workdir, policies = run
    out = tmp_path / "out"
    assert export.main([f"--workdir={workdir}", "--step=1", f"--out={out}",
                        "--dtype=bfloat16"]) == out
    assert f"exported step 1 of {workdir} (bfloat16) to {out}" in capsys.readouterr().out
    _, params = models.load_hf(str(out), dtype=jnp.bfloat16)
    assert_params_equal(params, jax.tree.map(lambda x: x.astype(jnp.bfloat16), policies[1]))
    for argv, message in [
            ([f"--workdir={workdir}"], "r1jax.export: --out is required"),
            ([f"--workdir={workdir}", f"--out={out}"], "out exists and is not empty"),
            ([f"--workdir={workdir}", "--step=5", f"--out={tmp_path / 'new'}"],
             "its steps are 1, 2"),
            ([f"--workdir={workdir}", "--dtype=int8", f"--out={tmp_path / 'new'}"],
             "'int8' is not one of float32, bfloat16")]:
        with pytest.raises(SystemExit, match=message):
            export.main(argv)


def test_transformers_logits_on_the_export_equal_ours(run, tmp_path):
    reason = "torch and transformers are not installed; transformers' logits are not compared"
    torch = pytest.importorskip("torch", reason=reason)
    transformers = pytest.importorskip("transformers", reason=reason)
    workdir, policies = run
    export.export(workdir, tmp_path / "out")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path / "out"), dtype=torch.float32, attn_implementation="eager").eval()
    tokens = np.asarray(jax.random.randint(jax.random.key(7), (2, 12), 0, CFG.vocab_size))
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    ours = np.asarray(models.forward(CFG, policies[2], jnp.asarray(tokens)))
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
