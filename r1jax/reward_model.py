"""A reward model (RM) for R1's "RL for all scenarios" stage: the policy's decoder with a scalar
head, trained on preference pairs with the Bradley-Terry loss.

    score(prompt + response) = w . h_last

h_last is the final-normed hidden state (`models.hidden_states`) at the last real token of the
right-padded sequence and w a float32 vector [D], no bias. The params are {"decoder": the
policy's params without lm_head (never read, so not trained or kept), "head": w}. A pair
(prompt, chosen, rejected) costs softplus(-margin) = -log sigmoid(margin), margin =
score(chosen) - score(rejected): the negative log-likelihood of the preference under the
Bradley-Terry model. w starts at zero, so every margin starts at 0 and the loss at log 2. The
loss is carried as LossTerms (its sum over pairs and the number of pairs), so microbatches are
exact (optim.py).

A sequence is the prompt's tokens followed by the response's, tokenized apart as at inference,
with no eos appended (`encode`). A finished job exports the RM as an HF checkpoint that
transformers loads as Qwen2ForSequenceClassification (Llama: LlamaForSequenceClassification)
with num_labels=1: config.json with pad_token_id, the decoder's tensors and score.weight [1, D]
(`models.save_hf(head="score")`; no lm_head.weight, which that class does not have: transformers
would load it as an unexpected key and ignore it). transformers scores a row at its last token
that is not pad_token_id (transformers 5.x, GenericForSequenceClassification: the rightmost
position whose id differs from it, the attention mask unused); `scores` takes each row's length
instead. The two agree on rows right-padded with the pad id whose last real token is not the pad
id: `encode_pairs` refuses a sequence that ends in it, and no eos is appended because Qwen's
base tokenizers pad with their eos.

    cfg, params = reward_model.load("runs/r1/reward_model/hf", mesh)   # placed on the mesh
    ids = reward_model.encode(tokenizer, prompt, response)             # one sequence's ids
    r_B = reward_model.scores(cfg, params, tokens_BT, lengths_B)       # float32 [B]
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax import loop, metrics, models, multihost, optim, sft
from r1jax.mesh import check_batch_split, make_mesh, mesh_from_config
from r1jax.optim import LossTerms

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def default_config() -> ml_collections.ConfigDict:
    """Every key the job reads; experiments override what they need."""
    return ml_collections.ConfigDict(dict(
        seed=0,  # the held-out split and the order of the pairs
        data=(),  # JSONL files of {"prompt", "chosen", "rejected"} records (+ optional "source")
        held_out=0.05,  # pairs kept out for the evaluation: a count when >= 1, else a fraction
        epochs=1,  # > 0: as many steps as this many passes over the training pairs take
        steps=1000,
        batch_size=32,  # pairs per update: 2 x this many sequences
        seq_len=512,  # the most tokens of prompt + response; a longer pair is an error naming
        drop_long=False,  # its file and line, or with this left out and counted
        microbatches=1,  # gradient accumulation inside one update
        compute_dtype="auto",  # forward/backward dtype; params and optimizer state stay float32
        layers="loop",  # "remat" / "scan": the blocks' activations recomputed in the backward
        lr=1e-5, warmup_steps=10, schedule="cosine", weight_decay=0.0, grad_clip=1.0,
        b1=0.9, b2=0.99, end_lr_fraction=0.0,  # cosine decays to lr x end_lr_fraction
        max_nonfinite_in_row=5,
        checkpoint_every=500,
    ))


# --- The model -------------------------------------------------------------------------------


def init_params(cfg: models.ModelConfig, decoder) -> dict:
    """An RM's params from a policy's ``decoder`` params: its lm_head left out and a zero head
    (every score 0 until trained)."""
    return {"decoder": {k: v for k, v in decoder.items() if k != "lm_head"},
            "head": jnp.zeros((cfg.d_model,), jnp.float32)}


def shard_params(cfg: models.ModelConfig, params, mesh):
    """Place (or re-place) RM params on ``mesh``: the decoder with its partition rules, the head
    (D numbers) replicated."""
    decoder = {k: v for k, v in models.param_shardings(cfg, mesh).items() if k != "lm_head"}
    return jax.device_put(params, {"decoder": decoder, "head": NamedSharding(mesh, P())})


def _scores(cfg, params, tokens_BT, lengths_B, layers: str = "loop"):
    """float32 [B] scores of right-padded rows of ``lengths_B`` real tokens: the head on the
    hidden state of each row's last real token. Padding is masked out of every key, so it
    changes nothing."""
    mask_BT = jnp.arange(tokens_BT.shape[1])[None, :] < lengths_B[:, None]
    hidden_BTD = models.hidden_states(cfg, params["decoder"], tokens_BT,
                                      attention_mask_BT=mask_BT, layers=layers)
    last_BD = jnp.take_along_axis(hidden_BTD, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
    return jnp.dot(last_BD.astype(jnp.float32), params["head"].astype(jnp.float32))


@functools.partial(jax.jit, static_argnums=0)
def scores(cfg: models.ModelConfig, params, tokens_BT, lengths_B) -> jax.Array:
    """float32 [B] scores of int32 tokens [B, T], right-padded, with ``lengths_B`` >= 1 real
    tokens per row: each row's score at position lengths - 1 (see the module docstring for
    transformers' equivalent rule)."""
    return _scores(cfg, params, tokens_BT, lengths_B)


def load(path, mesh=None) -> tuple[models.ModelConfig, dict]:
    """(cfg, float32 params) of the RM HF checkpoint directory ``path`` (a
    *ForSequenceClassification with one label, as `save` writes and transformers saves), placed
    on ``mesh`` (default: one device). A causal LM's checkpoint (no score head) is a
    CheckpointError (a ValueError) naming its config.json and saying it is not a reward model;
    a score.weight of another shape (more labels) one naming the file and both shapes."""
    mesh = mesh or make_mesh(devices=jax.devices()[:1])
    cfg, tree = models.load_hf(str(path), jnp.float32, mesh, head="score")
    decoder = {k: v for k, v in tree.items() if k != "score"}
    return cfg, {"decoder": decoder, "head": tree["score"]["kernel"][:, 0]}


def hf_tree(params) -> dict:
    """RM params as the tree `models.save_hf(head="score")` writes: the decoder's and
    score/kernel [D, 1]."""
    return {**params["decoder"], "score": {"kernel": params["head"][:, None]}}


def save(cfg: models.ModelConfig, params, out_dir, pad_id: int) -> None:
    """``params`` (host arrays) as the checkpoint transformers loads as
    *ForSequenceClassification with num_labels=1 in ``out_dir``: config.json (with
    pad_token_id ``pad_id``) and safetensors."""
    models.save_hf(cfg, hf_tree(params), str(out_dir), head="score", pad_id=pad_id)


# --- The update ------------------------------------------------------------------------------


UpdateSettings = sft.UpdateSettings  # the pair update's static settings (logprob_chunk unused)


def _correct(margin):
    """1 for a pair ranked right, 0 wrong, 1/2 for a tie (the untrained model's zero head ties
    every pair: chance, not failure)."""
    return (margin > 0) + 0.5 * (margin == 0)


def pair_terms(cfg, s: UpdateSettings, params, batch) -> LossTerms:
    """Bradley-Terry terms of pairs (tokens int32 [P, 2, T] and lengths int32 [P, 2], chosen
    first): the sum of softplus(-margin), the number of pairs, and the sums of correct pairs
    (`_correct`) and margins. Both sequences of every pair go through one forward pass [2P, T]
    with the decoder cast to the compute dtype; the head and the scores stay float32."""
    tokens_P2T, lengths_P2 = batch
    n, _, T = tokens_P2T.shape
    params = {"decoder": optim.cast_floating(params["decoder"], s.compute_dtype),
              "head": params["head"]}
    r_P2 = _scores(cfg, params, tokens_P2T.reshape(2 * n, T), lengths_P2.reshape(2 * n),
                   s.layers).reshape(n, 2)
    margin_P = r_P2[:, 0] - r_P2[:, 1]
    return LossTerms(jnp.sum(jax.nn.softplus(-margin_P)), jnp.asarray(n, jnp.float32),
                     {"correct": jnp.sum(_correct(margin_P)), "margin": jnp.sum(margin_P)})


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def update(cfg, s: UpdateSettings, params, opt_state, microbatches):
    """One guarded update from (tokens [M, b, 2, T], lengths [M, b, 2]) microbatches of pairs:
    (params, opt_state, metrics) with loss, accuracy, margin (mean), pairs, grad_norm and
    skipped; params and opt_state donated."""
    def terms_fn(p, batch):
        return pair_terms(cfg, s, p, batch)

    params, opt_state, terms, out = optim.guarded_update(
        terms_fn, s.optimizer.make(), params, opt_state, microbatches)
    pairs = jnp.maximum(terms.denom, 1.0)
    return params, opt_state, {**out, "accuracy": terms.stats["correct"] / pairs,
                               "margin": terms.stats["margin"] / pairs, "pairs": terms.denom}


def _split_batch(batch, config, rows: int):
    """(tokens, lengths) microbatches of a batch of ``rows`` pairs (this process's share)."""
    tokens = np.stack([np.asarray(pair["tokens"]) for pair in batch]).astype(np.int32)
    lengths = np.stack([np.asarray(pair["lengths"]) for pair in batch]).astype(np.int32)
    if tokens.shape != (rows, 2, config.seq_len) or lengths.shape != (rows, 2):
        raise ValueError(f"batch of tokens {tokens.shape} / lengths {lengths.shape}; the config "
                         f"asks for batch_size={config.batch_size}, seq_len={config.seq_len} "
                         f"(tokens [B, 2, seq_len], lengths [B, 2]; {rows} of the B pairs from "
                         f"this process)")
    return optim.split_microbatches((tokens, lengths), config.microbatches)


def train(config, workdir, cfg, params, batches, mesh) -> loop.RunResult:
    """Run (or resume) Bradley-Terry training of RM ``params`` (`init_params`) for
    ``config.steps`` updates (the loop's skeleton: checkpoints with the iterator state, resume,
    SIGTERM; see loop.py). ``batches`` yields this process's pairs of each batch as a list of
    {"tokens": int [2, seq_len], "lengths": int [2]} (chosen first; `encode_pairs`' rows), as
    `pipeline.prompt_dataset` does over them, and has ``get_state``/``set_state``."""
    settings = UpdateSettings.from_config(config)
    return sft.batch_updates(config, workdir, settings.optimizer, shard_params(cfg, params, mesh),
                             batches, mesh, _split_batch, functools.partial(update, cfg, settings),
                             lambda _: ("pairs", config.batch_size))


def evaluate(cfg, params, tokens, lengths, batch_size: int, mesh) -> dict:
    """accuracy (`_correct`), loss and mean margin of N >= 1 pairs (tokens [N, 2, T], lengths
    [N, 2]) under ``params``, and their number N; scored ``batch_size`` pairs at a time, split over
    the mesh's data axes (the last batch filled with copies of the first row, left out)."""
    rows_RT, lengths_R = tokens.reshape(-1, tokens.shape[-1]), lengths.reshape(-1)
    chunk = 2 * batch_size
    fill = -len(rows_RT) % chunk
    rows_RT = np.concatenate([rows_RT, np.repeat(rows_RT[:1], fill, 0)])
    lengths_R = np.concatenate([lengths_R, np.repeat(lengths_R[:1], fill, 0)])
    out = []
    for start in range(0, len(rows_RT), chunk):
        batch = jax.device_put((rows_RT[start:start + chunk], lengths_R[start:start + chunk]),
                               (models.batch_sharding(mesh, 2), models.batch_sharding(mesh, 1)))
        out.append(np.asarray(multihost.fetch(scores(cfg, params, *batch))))
    r_N2 = np.concatenate(out)[:len(tokens) * 2].astype(np.float64).reshape(-1, 2)
    margin = r_N2[:, 0] - r_N2[:, 1]
    return {"accuracy": float(np.mean(_correct(margin))),
            "loss": float(np.mean(np.logaddexp(0.0, -margin))),
            "margin": float(np.mean(margin)), "pairs": len(margin)}


# --- Data ------------------------------------------------------------------------------------


def read_pairs(paths) -> list[tuple[str, dict]]:
    """("<file>, line <n>", record) for each record of one or several JSONL files, in order, each
    with a non-empty string "prompt", "chosen" and "rejected" (a ValueError names the file, line
    and field otherwise); other fields ("source") are kept and not read."""
    from r1jax.data import records

    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError("no preference data files given (reward_model.data)")
    out = []
    for path in paths:
        for number, record in records.read_jsonl(path):
            for name in PAIR_FIELDS:
                if not isinstance(record.get(name), str) or not record[name]:
                    raise ValueError(f"{path}, line {number}: field {name!r} must be a "
                                     f"non-empty string, got {record.get(name)!r}")
            out.append((f"{path}, line {number}", record))
    if not out:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    return out


def encode(tokenizer, prompt: str, response: str) -> list[int]:
    """The token ids an RM scores for ``response`` to ``prompt``: the two tokenized apart (as
    the policy's response tokens follow its prompt's) and joined, no eos appended (see the
    module docstring)."""
    return tokenizer.encode(prompt) + tokenizer.encode(response)


def encode_pairs(pairs, tokenizer, seq_len: int, drop_long: bool = False):
    """(tokens int32 [N, 2, seq_len], lengths int32 [N, 2], dropped) of `read_pairs`' ``pairs``:
    prompt + chosen and prompt + rejected (`encode`), right-padded with the pad id. A sequence
    longer than ``seq_len`` is a ValueError naming its file and line, or with ``drop_long`` its
    pair is left out and counted in ``dropped``. One that ends in the pad id is an error:
    transformers would score it at another token (see the module docstring)."""
    tokens = np.full((len(pairs), 2, seq_len), tokenizer.pad_id, np.int32)
    lengths = np.zeros((len(pairs), 2), np.int32)
    kept = 0
    for where, record in pairs:
        rows = [encode(tokenizer, record["prompt"], record[name]) for name in PAIR_FIELDS[1:]]
        for name, row in zip(PAIR_FIELDS[1:], rows):
            if not row:
                raise ValueError(f"{where}: prompt + {name} encodes to no tokens")
            if row[-1] == tokenizer.pad_id:
                raise ValueError(f"{where}: prompt + {name} ends in the pad id {tokenizer.pad_id}"
                                 f", where a sequence classifier cannot find its last token")
        longest = max(len(row) for row in rows)
        if longest > seq_len and drop_long:
            continue
        if longest > seq_len:
            name = PAIR_FIELDS[1 + int(len(rows[1]) > len(rows[0]))]
            raise ValueError(f"{where}: prompt + {name} is {longest} tokens, more than "
                             f"reward_model.seq_len={seq_len} (raise it, or set "
                             f"reward_model.drop_long to leave such pairs out)")
        for i, row in enumerate(rows):
            tokens[kept, i, :len(row)] = row
            lengths[kept, i] = len(row)
        kept += 1
    if not kept:
        raise ValueError(f"no pair fits reward_model.seq_len={seq_len}")
    return tokens[:kept], lengths[:kept], len(pairs) - kept


def split_held_out(n: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices of ``n`` pairs: ``held_out`` of them (a count when >= 1,
    else a fraction) drawn with ``seed``."""
    count = int(held_out) if held_out >= 1 else round(held_out * n)
    if held_out < 0 or count >= n:
        raise ValueError(f"reward_model.held_out={held_out} keeps {count} of the {n} pairs out; "
                         f"it must leave at least one to train on")
    order = np.random.default_rng(seed).permutation(n)
    return order[count:], order[:count]


# --- The job ---------------------------------------------------------------------------------


def job(config, workdir: str) -> bool:
    """The `reward_model` job: ``config.model`` (a policy's HF checkpoint at ``hf_path``, e.g.
    the SFT model, or a named config randomly initialised) with a zero head, trained on the
    preference pairs of the JSONL files ``config.reward_model.data`` (`read_pairs`) but the
    ``held_out`` ones, for ``epochs`` passes (``steps`` updates when epochs is 0). A finished run
    writes ``evaluation.json`` (accuracy, loss and mean margin of the held-out pairs, eval/, and
    of the training pairs, train/) and the RM as an HF checkpoint in ``config.export``,
    the stage's output: when that exists the job is skipped. Returns whether the run finished
    (False: stopped by SIGTERM, checkpointed; rerun to resume)."""
    from r1jax import export, policy, toy
    from r1jax.data import pipeline

    out = epath.Path(workdir).absolute() / config.export
    if config.export and out.exists():
        print(f"reward_model: {out} exists, so this stage is done")
        return True
    c = config.reward_model.copy_and_resolve_references()
    pairs = read_pairs(tuple(c.data))  # every record checked first
    cfg = policy.model_config(config.model)
    tokenizer, tokenizer_source = toy.job_tokenizer(config, workdir, cfg)
    tokens, lengths, dropped = encode_pairs(pairs, tokenizer, c.seq_len, c.drop_long)
    train_ids, held_ids = split_held_out(len(tokens), c.held_out, c.seed)
    if c.epochs:
        c.steps = math.ceil(c.epochs * len(train_ids) / c.batch_size)
    print(f"reward_model: {len(pairs)} pairs, {dropped} longer than {c.seq_len} tokens left out, "
          f"{len(held_ids)} held out; {c.steps} steps of {c.batch_size} of the {len(train_ids)} "
          f"training pairs")
    mesh = mesh_from_config(config.mesh)
    check_batch_split("reward_model.batch_size", c.batch_size, c.microbatches, mesh)
    cfg, decoder = policy.load_policy(config.model, mesh=mesh)
    examples = [{"tokens": tokens[i], "lengths": lengths[i]} for i in train_ids]
    batches = iter(pipeline.prompt_dataset(examples, c.batch_size, c.seed,
                                           shard=multihost.row_block(mesh, c.batch_size)))
    result = train(c, workdir, cfg, init_params(cfg, decoder), batches, mesh)
    if result.finished:
        final = result.state["params"]
        summary = {}
        for split, ids in (("eval", held_ids), ("train", train_ids)):
            if len(ids):
                summary.update({f"{split}/{k}": v for k, v in evaluate(
                    cfg, final, tokens[ids], lengths[ids], c.batch_size // c.microbatches,
                    mesh).items()})
        metrics.write_evaluation(workdir, summary)
        print("reward_model: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
        if config.export:
            dtype = jnp.dtype(config.model.get("dtype") or "float32")  # as export.write_final's
            host = jax.tree.map(lambda x: x.astype(dtype), multihost.fetch(final))
            if multihost.is_primary():
                export.write(cfg, hf_tree(host), export.tokenizer_files(tokenizer_source), out,
                             head="score", pad_id=tokenizer.pad_id)
    return result.finished
