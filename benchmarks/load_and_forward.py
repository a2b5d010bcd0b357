"""Host memory while loading an HF checkpoint, and forward throughput of the tiny configs.

    python benchmarks/load_and_forward.py [--size-mb 300] [--runs 5]

1. Writes a random fp32 Qwen2-shaped checkpoint of about --size-mb with ``models.save_hf`` into a
   temporary directory (once as one file, once sharded into ~100 MB files), then loads each with
   ``models.load_hf(dtype=float32)`` in a fresh subprocess and reports the peak host RSS above the
   baseline taken after importing jax and r1jax. ``ru_maxrss`` is the kernel's true peak; a thread
   that polls /proc/self/status splits the peak into anonymous memory (copies the loader makes,
   and the params themselves) and file-backed pages (mmap'd safetensors, clean page cache the
   kernel can drop). The loaded params themselves are one checkpoint's worth of anonymous memory,
   so the ratio can't go below 1x; the design goal is "well under 2x".
2. Forward tokens/s of the tiny, toy-1m and toy-10m configs at batch 8 x 256 tokens (jitted,
   warmed up, median of --runs runs) on the default JAX device.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def measure_load(path: str) -> dict:
    """Runs in a fresh subprocess: load_hf(path) and the host memory it took."""
    import jax
    import jax.numpy as jnp

    from r1jax import models

    jax.block_until_ready(jnp.zeros(8) + 1)  # backend up before the baseline
    base_maxrss, base_rss = _maxrss_kb(), _status_kb("VmRSS")
    try:  # reset VmHWM (the per-process peak) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    base_anon, base_file = _status_kb("RssAnon"), _status_kb("RssFile")
    peaks = {"RssAnon": base_anon, "RssFile": base_file}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for k, v in peaks.items():
                peaks[k] = max(v, _status_kb(k))
            time.sleep(0.0005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    _, params = models.load_hf(path, dtype=jnp.float32)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    kib = 1024
    return {
        "seconds": seconds,
        "params_bytes": sum(x.nbytes for x in jax.tree.leaves(params)),
        "maxrss_increase_bytes": (_maxrss_kb() - base_maxrss) * kib,
        "hwm_increase_bytes": (_status_kb("VmHWM") - base_rss) * kib if hwm_reset else None,
        "peak_anon_increase_bytes": (peaks["RssAnon"] - base_anon) * kib,
        "peak_file_increase_bytes": (peaks["RssFile"] - base_file) * kib,
        "end_anon_increase_bytes": (_status_kb("RssAnon") - base_anon) * kib,
    }


def checkpoint_config(size_mb: float):
    """A Qwen2-shaped fp32 config of about ``size_mb`` MB (vocab 16384, d_model 1024)."""
    from r1jax import models

    base = {"family": "qwen2", "vocab_size": 16_384, "d_model": 1024, "num_heads": 16,
            "num_kv_heads": 4, "head_dim": 64, "ffn_dim": 2816, "qkv_bias": True,
            "max_position": 4096}
    for layers in range(1, 64):
        cfg = models.ModelConfig(num_layers=layers, **base)
        if models.num_params(cfg) * 4 >= size_mb * 1e6 * 0.97:
            break
    return cfg


def write_checkpoint(out_dir: str, size_mb: float, max_shard_bytes: int) -> dict:
    """Runs in a subprocess: random fp32 params (numpy, 0.02 scale) saved with save_hf."""
    import jax

    from r1jax import models

    cfg = checkpoint_config(size_mb)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: 0.02 * rng.standard_normal(x.shape, np.float32),
                          models.abstract_params(cfg))
    models.save_hf(cfg, params, out_dir, max_shard_bytes=max_shard_bytes)
    files = [f for f in os.listdir(out_dir) if f.endswith(".safetensors")]
    return {"bytes": sum(os.path.getsize(os.path.join(out_dir, f)) for f in files),
            "files": len(files), "layers": cfg.num_layers, "d_model": cfg.d_model,
            "vocab": cfg.vocab_size}


def _child(*args) -> dict:
    """This script in a fresh interpreter; its last stdout line is JSON."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_load(size_mb: float) -> None:
    """Writing and loading both run in subprocesses, so this process stays small: Linux carries
    a parent's peak RSS into a child's ru_maxrss across fork + exec."""
    def mb(b):
        return f"{b / 1e6:.0f} MB"

    rows, info = [], None
    for layout, shard_bytes in (("1 file", 4 << 30), ("sharded ~100MB", 100 << 20)):
        with tempfile.TemporaryDirectory() as tmp:
            info = _child("--write", tmp, "--size-mb", str(size_mb),
                          "--max-shard-bytes", str(shard_bytes))
            r = _child("--measure-load", tmp)
        size = info["bytes"]
        hwm = r["hwm_increase_bytes"]
        rows.append((
            f"{layout} ({info['files']})", mb(size), f"{r['seconds']:.2f}",
            f"{mb(r['maxrss_increase_bytes'])} ({r['maxrss_increase_bytes'] / size:.2f}x)",
            "n/a" if hwm is None else f"{mb(hwm)} ({hwm / size:.2f}x)",
            f"{mb(r['peak_anon_increase_bytes'])} ({r['peak_anon_increase_bytes'] / size:.2f}x)",
            mb(r["peak_file_increase_bytes"]),
            mb(r["end_anon_increase_bytes"])))
    print(f"\n## load_hf peak host memory (random fp32 Qwen2-shaped checkpoint written by save_hf: "
          f"{info['layers']} layers, d_model {info['d_model']}, vocab {info['vocab']}; "
          "loaded as fp32, no mesh; page cache warm)\n")
    print_table(("layout (files)", "checkpoint", "load s", "peak RSS + (ru_maxrss)",
                 "peak RSS + (VmHWM)", "peak anon +", "peak file-backed +", "anon after +"), rows)
    print("\nanon = the params and the loader's copies; file-backed = mmap'd safetensors pages "
          "(clean page cache, droppable, but counted in RSS).")


def bench_forward(runs: int, batch: int = 8, seq: int = 256) -> None:
    import jax
    import jax.numpy as jnp

    from r1jax import models

    print(f"\n## forward throughput ({jax.devices()[0].platform}, {len(jax.devices())} device(s), "
          f"fp32, jitted, median of {runs})\n")
    rows = []
    for name in ("tiny", "toy-1m", "toy-10m"):
        cfg = models.get_config(name)
        params = models.init(cfg, jax.random.key(0))
        tokens = jax.random.randint(jax.random.key(1), (batch, seq), 0, cfg.vocab_size, jnp.int32)
        models.forward(cfg, params, tokens).block_until_ready()  # compile + warm up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            models.forward(cfg, params, tokens).block_until_ready()
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        rows.append((f"forward {name} ({models.num_params(cfg) / 1e6:.2f}M params)",
                     f"[{batch}, {seq}]", f"{t * 1e3:.1f} ms", f"{batch * seq / t:,.0f}"))
    print_table(("what", "shape", "time", "tokens/s"), rows)


def print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    def line(r):
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--measure-load", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--max-shard-bytes", type=int, default=4 << 30, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_load:
        print(json.dumps(measure_load(args.measure_load)))
        return
    if args.write:
        print(json.dumps(write_checkpoint(args.write, args.size_mb, args.max_shard_bytes)))
        return
    bench_load(args.size_mb)
    bench_forward(args.runs)


if __name__ == "__main__":
    main()
