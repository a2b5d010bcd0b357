"""Model configs: one frozen dataclass for the Qwen2/Qwen2.5 and Llama-3 decoders, and named ones.

A config is hashable so that it can be a static argument of jitted functions.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama 3.1/3.2 rope frequency scaling (transformers' ``rope_type="llama3"``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only transformer (pre-norm, RMSNorm, GQA, rope, SwiGLU)."""

    family: str  # "qwen2" or "llama": decides the HF architecture name and the default biases.
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_dim: int
    rope_theta: float = 10_000.0
    rms_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = False
    rope_scaling: Llama3RopeScaling | None = None
    max_position: int = 32_768

    def __post_init__(self):
        if self.family not in ("qwen2", "llama"):
            raise ValueError(f"ModelConfig.family must be 'qwen2' or 'llama', got {self.family!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rope, got {self.head_dim}")


def num_params(cfg: ModelConfig) -> int:
    """Parameter count from the config alone (no arrays), as published model cards count it."""
    d, q, kv = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    attention = d * q + 2 * d * kv + q * d + (q + 2 * kv if cfg.qkv_bias else 0)
    layer = attention + 3 * d * cfg.ffn_dim + 2 * d
    head = 0 if cfg.tie_embeddings else d * cfg.vocab_size
    return cfg.vocab_size * d + cfg.num_layers * layer + d + head


def forward_flops(cfg: ModelConfig, positions: int, attended_pairs: int, scored: int) -> int:
    """Model flops of a forward pass, 2 per multiply-add of its matmuls (norms, rope and softmax
    left out, as model-flops utilisation counts them): the blocks' projections and MLP at
    ``positions`` token positions, attention scores and values over ``attended_pairs`` (query,
    key) pairs, summed over positions (a causal row of T positions has T (T + 1) / 2), and the
    LM head at the ``scored`` positions. A backward pass costs twice its forward."""
    d, q, kv = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    per_position = cfg.num_layers * (2 * d * q + 2 * d * kv + 3 * d * cfg.ffn_dim)
    per_pair = cfg.num_layers * 2 * q
    return 2 * (per_position * positions + per_pair * attended_pairs
                + d * cfg.vocab_size * scored)


def _qwen2(**kw) -> ModelConfig:
    return ModelConfig(family="qwen2", qkv_bias=True, rms_eps=1e-6, **kw)


def _llama3(**kw) -> ModelConfig:
    return ModelConfig(family="llama", qkv_bias=False, rms_eps=1e-5, rope_theta=500_000.0, **kw)


_QWEN_SMALL_VOCAB, _QWEN_LARGE_VOCAB, _LLAMA3_VOCAB = 151_936, 152_064, 128_256

_CONFIGS = {
    # Tiny configs for tests and the toy world (fp32 on CPU). Sizes from num_params.
    "tiny": _qwen2(vocab_size=256, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=16, ffn_dim=128, max_position=2048),  # ~0.1M
    "toy-1m": _qwen2(vocab_size=512, d_model=128, num_layers=4, num_heads=4, num_kv_heads=2,
                     head_dim=32, ffn_dim=512, max_position=2048),  # ~1.1M
    "toy-10m": _qwen2(vocab_size=1024, d_model=320, num_layers=8, num_heads=4, num_kv_heads=2,
                      head_dim=80, ffn_dim=1024, max_position=2048),  # ~11M
    # Published checkpoints (their config.json values).
    "qwen2.5-0.5b": _qwen2(vocab_size=_QWEN_SMALL_VOCAB, d_model=896, num_layers=24,
                           num_heads=14, num_kv_heads=2, head_dim=64, ffn_dim=4864,
                           rope_theta=1e6, tie_embeddings=True),
    "qwen2.5-1.5b": _qwen2(vocab_size=_QWEN_SMALL_VOCAB, d_model=1536, num_layers=28,
                           num_heads=12, num_kv_heads=2, head_dim=128, ffn_dim=8960,
                           rope_theta=1e6, tie_embeddings=True),
    "qwen2.5-7b": _qwen2(vocab_size=_QWEN_LARGE_VOCAB, d_model=3584, num_layers=28,
                         num_heads=28, num_kv_heads=4, head_dim=128, ffn_dim=18944,
                         rope_theta=1e6),
    "qwen2.5-math-1.5b": _qwen2(vocab_size=_QWEN_SMALL_VOCAB, d_model=1536, num_layers=28,
                                num_heads=12, num_kv_heads=2, head_dim=128, ffn_dim=8960,
                                rope_theta=10_000.0, tie_embeddings=True, max_position=4096),
    "qwen2.5-math-7b": _qwen2(vocab_size=_QWEN_LARGE_VOCAB, d_model=3584, num_layers=28,
                              num_heads=28, num_kv_heads=4, head_dim=128, ffn_dim=18944,
                              rope_theta=10_000.0, max_position=4096),
    "llama-3.2-1b": _llama3(vocab_size=_LLAMA3_VOCAB, d_model=2048, num_layers=16,
                            num_heads=32, num_kv_heads=8, head_dim=64, ffn_dim=8192,
                            tie_embeddings=True, max_position=131_072,
                            rope_scaling=Llama3RopeScaling(32.0, 1.0, 4.0, 8192)),
    "llama-3.1-8b": _llama3(vocab_size=_LLAMA3_VOCAB, d_model=4096, num_layers=32,
                            num_heads=32, num_kv_heads=8, head_dim=128, ffn_dim=14336,
                            max_position=131_072,
                            rope_scaling=Llama3RopeScaling(8.0, 1.0, 4.0, 8192)),
}


def list_configs() -> list[str]:
    return sorted(_CONFIGS)


def get_config(name: str, **overrides) -> ModelConfig:
    """The named config, optionally with some fields replaced
    (``get_config("tiny", vocab_size=512)``)."""
    if name not in _CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(list_configs())}")
    cfg = _CONFIGS[name]
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def rope_inv_freq(cfg: ModelConfig):
    """Rope inverse frequencies [head_dim // 2] as a Python list of floats (llama3 scaling applied).

    Computed in float64 on the host; it is a constant of the config.
    """
    half = cfg.head_dim // 2
    inv = [1.0 / cfg.rope_theta ** (2 * i / cfg.head_dim) for i in range(half)]
    s = cfg.rope_scaling
    if s is None:
        return inv
    low_wavelen = s.original_max_position / s.low_freq_factor
    high_wavelen = s.original_max_position / s.high_freq_factor
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:  # high frequencies: unchanged
            out.append(f)
        elif wavelen > low_wavelen:  # low frequencies: divided by the factor
            out.append(f / s.factor)
        else:  # in between: interpolate smoothly
            smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (
                s.high_freq_factor - s.low_freq_factor
            )
            out.append((1 - smooth) * f / s.factor + smooth * f)
    return out
