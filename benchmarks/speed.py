"""Speed and memory of TransUNet: the project's fast path against a plain reference path.

    python -m benchmarks.speed                     # R50-ViT-B_16 at 224, batch 4: reference vs fast
    python -m benchmarks.speed --quick             # smoke test: tiny preset, 2 rounds (< 1 min)
    python -m benchmarks.speed --ablation          # reference -> +attn -> +wstd -> +cache -> +cl
                                                   #   -> +fsgd -> +bf16, and fast
    python -m benchmarks.speed --presets R50-ViT-B_16 tiny --img-size 224 --batch-size 2 4 \\
        --modes train infer --paths reference fast fast+ckpt --out benchmarks/results/NAME.json

A *path* is a way of running the same model with the same weights. It is named by a base,
``reference`` or ``fast``, followed by ``+token`` switches:

    reference  explicit softmax attention, weight standardisation spelt out and recomputed on
               every call, contiguous NCHW tensors, fp32 (what the official code does)
    fast       every switch below that is correct on this device: attn, wstd, cache, cl, fsgd,
               and bf16 autocast where the device computes bf16 natively (CUDA; CPUs with
               avx512_bf16 or amx_bf16), else fp32
    +attn      fused ``F.scaled_dot_product_attention`` (MultiHeadSelfAttention.use_fused)
    +wstd      weight standardisation as one fused layer_norm kernel (StdConv2d.use_fused)
    +cache     standardised weights cached at inference (StdConv2d.cache_weight)
    +cl        channels_last model and input
    +fsgd      ``torch.optim.SGD(fused=True)``: one kernel per step instead of four passes
    +bf16 / +fp32   force the autocast precision
    +ckpt      activation checkpointing of the transformer blocks (training memory)
    +compile   ``torch.compile``; the compiling calls are untimed warm-up (stored in the JSON)

Timing: for each (configuration, mode) one process holds one model and cycles through the
paths (``--rounds`` times: switch, ``--warmup`` untimed and ``--iters`` timed iterations), so
reference and fast runs interleave closely and share the machine's load; times are medians over
all rounds, speed-ups the median of the per-round ratios. Compiled paths get their own process.
Memory: a fresh process per (configuration, mode, path) runs two iterations and reports its
peak (VmHWM on CPU, ``max_memory_allocated`` on CUDA), so each peak is that path's own.
Training = zero_grad + forward + ``out.backward(g)`` with a fixed random g + SGD step (momentum
0.9, weight decay 1e-4); inference = forward under ``torch.inference_mode``. Switches that do
not act in a mode (cache in training; fsgd and ckpt at inference) are not measured twice.
FLOPs are counted once per configuration with ``FlopCounterMode`` on the explicit path (meta
device, no arithmetic); a training step is taken as 3x the forward FLOPs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# the device and precision policy of training and evaluation (native bf16 detection, autocast)
from tutorial_lib.runtime import autocast_context, cpu_flags, native_bf16, pick_device

ROOT = Path(__file__).resolve().parent.parent

ABLATION = ("reference", "reference+attn", "reference+attn+wstd", "reference+attn+wstd+cache",
            "reference+attn+wstd+cache+cl", "reference+attn+wstd+cache+cl+fsgd",
            "reference+attn+wstd+cache+cl+fsgd+bf16")

# Dense peak throughput in GFLOP/s for the share-of-peak column, by GPU name (bf16 tensor cores,
# fp32 without tensor cores).
GPU_PEAKS = {
    "H200": {"bf16": 989_000.0, "fp32": 67_000.0},
    "H100": {"bf16": 989_000.0, "fp32": 67_000.0},
    "A100": {"bf16": 312_000.0, "fp32": 19_500.0},
}
CPU_PEAK_FP32 = 220.0  # the project's 2 CPU cores (AVX-512 FMA)


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Settings:
    """One way of running the model; ``precision`` is "fp32" or "bf16"."""

    fused_attention: bool = False
    fused_std: bool = False
    std_cache: bool = False
    channels_last: bool = False
    precision: str = "fp32"
    fused_sgd: bool = False
    checkpointing: bool = False
    compile: bool = False

    def effective(self, mode: str) -> "Settings":
        """The settings with the switches that do nothing in ``mode`` turned off."""
        if mode == "train":
            return dataclasses.replace(self, std_cache=False)
        return dataclasses.replace(self, fused_sgd=False, checkpointing=False)


_SWITCHES = {
    "attn": {"fused_attention": True},
    "wstd": {"fused_std": True},
    "cache": {"std_cache": True},
    "cl": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "fp32": {"precision": "fp32"},
    "fsgd": {"fused_sgd": True},
    "ckpt": {"checkpointing": True},
    "compile": {"compile": True},
}


def resolve_path(name: str, device: str) -> Settings:
    """``"fast+ckpt"`` -> Settings. Raises ValueError for an unknown base or switch."""
    base, *switches = name.split("+")
    if base == "reference":
        s = Settings()
    elif base == "fast":
        s = Settings(fused_attention=True, fused_std=True, std_cache=True, channels_last=True,
                     fused_sgd=True, precision="bf16" if native_bf16(device) else "fp32")
    else:
        raise ValueError(f"path {name!r} must start with 'reference' or 'fast'")
    for sw in switches:
        if sw not in _SWITCHES:
            raise ValueError(f"unknown switch +{sw} in path {name!r}; known: "
                             f"{', '.join('+' + k for k in _SWITCHES)}")
        s = dataclasses.replace(s, **_SWITCHES[sw])
    return s


def configure(model, settings: Settings):
    """Set the model's switches for ``settings`` (memory format included); returns the model."""
    import torch

    from tutorial_lib.attention import MultiHeadSelfAttention
    from tutorial_lib.resnet import StdConv2d

    for m in model.modules():
        if isinstance(m, MultiHeadSelfAttention):
            m.use_fused = settings.fused_attention
        elif isinstance(m, StdConv2d):
            m.use_fused = settings.fused_std
            m.cache_weight = settings.std_cache
    model.set_gradient_checkpointing(settings.checkpointing)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    return model.to(memory_format=fmt)


# --------------------------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------------------------
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine_info() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    flags = cpu_flags()
    info = {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": native_bf16("cpu"),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return None


def peak_gflops(precision: str, device: str, gpu: str | None, args) -> float | None:
    if device == "cuda":
        for key, peaks in GPU_PEAKS.items():
            if gpu and key in gpu:
                return peaks[precision]
        return args.peak_gflops if precision == "fp32" else args.peak_gflops_bf16
    if precision == "fp32":
        return args.peak_gflops
    if args.peak_gflops_bf16 is not None:
        return args.peak_gflops_bf16
    # without native bf16 the units are the fp32 ones (bf16 is emulated, far below this)
    return 2 * args.peak_gflops if native_bf16("cpu") else args.peak_gflops


# --------------------------------------------------------------------------------------------
# one measurement (runs in a fresh subprocess)
# --------------------------------------------------------------------------------------------
def _make_step(model, x, s: Settings, mode: str, device: str, runner=None):
    """One training or inference iteration of ``model`` on ``x`` as a closure."""
    import torch

    runner = model if runner is None else runner
    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode(), autocast_context(device, s.precision):
                runner(x)
        return infer

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4,
                          fused=s.fused_sgd)
    grad = []

    def train():
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, s.precision):
            out = runner(x)
        if not grad:  # a fixed output gradient, made once (not a .sum(): see the README)
            grad.append(torch.randn_like(out))
        out.backward(grad[0])
        opt.step()
    return train


def measure(job: dict) -> dict:
    """Time every path of ``job["paths"]`` on one model, interleaved, then report memory.

    One model (same weights) is switched from path to path; each round runs, for every path in
    turn, ``warmup`` untimed and ``iters`` timed iterations, so that all paths see the same
    machine load. The peak memory is the process's: meaningful when ``job["paths"]`` has one
    path (the orchestrator runs such a fresh process per path for memory).
    """
    import torch

    from tutorial_lib.transunet import TransUNet, get_config

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    device = job["device"]
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    cfg = get_config(job["preset"], img_size=tuple(job["img_size"]))
    model = TransUNet(cfg).to(device)
    x0 = torch.randn(job["batch"], cfg.in_channels, *cfg.img_size, device=device)
    rss_built = _status_mb("VmRSS")
    paths = [Settings(**d) for d in job["paths"]]
    runners = {}
    out = [{"wall_s": [], "cpu_s": [], "warmup_s": []} for _ in paths]
    for rnd in range(job["rounds"]):
        for s, rec in zip(paths, out):
            configure(model, s)
            x = x0.contiguous(memory_format=torch.channels_last if s.channels_last
                              else torch.contiguous_format)
            if s.compile and s not in runners:
                runners[s] = torch.compile(model)
            step = _make_step(model, x, s, job["mode"], device, runners.get(s))
            # compiling takes extra calls (first trace, then a recompile once caches exist)
            for _ in range(job["warmup"] + (2 if s.compile and rnd == 0 else 0)):
                sync()
                t = time.perf_counter()
                step()
                sync()
                rec["warmup_s"].append(time.perf_counter() - t)
            wall, cpu = [], []
            for _ in range(job["iters"]):
                sync()
                t, c = time.perf_counter(), time.process_time()
                step()
                sync()
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            rec["wall_s"].append(wall)
            rec["cpu_s"].append(cpu)
            del step
    peak = (torch.cuda.max_memory_allocated() / 2**20) if cuda else _status_mb("VmHWM")
    return {"paths": out, "peak_mb": peak, "rss_after_build_mb": rss_built,
            "threads": torch.get_num_threads()}


def run_job(job: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--worker", json.dumps(job)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"error": "\n".join(tail) or f"exit code {proc.returncode}"}


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------
def forward_flops(preset: str, img_size: tuple[int, int]) -> int:
    """FLOPs of one image's forward pass, counted on the meta device on the explicit path."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tutorial_lib.transunet import TransUNet, get_config

    cfg = get_config(preset, img_size=img_size)
    with torch.device("meta"):
        model = configure(TransUNet(cfg), Settings()).eval()
        x = torch.empty(1, cfg.in_channels, *cfg.img_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return (int(h), int(w or h))


def _fmt_size(size) -> str:
    return f"{size[0]}x{size[1]}"


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (also readable as plain text)."""
    head = ["preset", "size", "batch", "mode", "path", "ms/iter", "best ms", "img/s", "x ref",
            "x ref best", "GFLOP/s", "% peak", "peak MB", "mem x ref", "cpu/wall"]
    lines = []
    for r in rows:
        g = r.get
        f = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
        if "error" in r:
            timing = ["error"] + [""] * 7
        else:
            timing = [
                f(g("median_s") and g("median_s") * 1e3, ".0f"),
                f(g("best_s") and g("best_s") * 1e3, ".0f"), f(g("img_per_s"), ".2f"),
                f(g("speedup"), ".2f"), f(g("speedup_best"), ".2f"), f(g("gflops"), ".0f"),
                f(g("peak_share") and 100 * g("peak_share"), ".0f"),
            ]
        lines.append([r["preset"], _fmt_size(r["img_size"]), str(r["batch"]), r["mode"],
                      r["path"], *timing, f(g("peak_mb"), ".0f"), f(g("mem_ratio"), ".2f"),
                      f(g("cpu_per_wall"), ".2f")])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)),
           " | ".join("-" * w for w in widths)]
    for line in lines:
        out.append(" | ".join(c.rjust(w) if i >= 5 else c.ljust(w)
                              for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join("| " + line + " |" for line in out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["R50-ViT-B_16"])
    p.add_argument("--img-size", nargs="+", type=_size, default=None,
                   help="sizes as H or HxW (default: each preset's own size)")
    p.add_argument("--batch-size", nargs="+", type=int, default=[4])
    p.add_argument("--modes", nargs="+", choices=["train", "infer"], default=["train", "infer"])
    p.add_argument("--paths", nargs="+", default=None,
                   help="paths to compare (default: reference fast); see the list above")
    p.add_argument("--ablation", action="store_true", help="measure the cumulative ablation "
                   "reference -> +attn -> +wstd -> +cache -> +cl -> +fsgd -> +bf16, and fast")
    p.add_argument("--compile", action="store_true", help="also measure fast+compile")
    p.add_argument("--checkpointing", action="store_true", help="also measure fast+ckpt")
    p.add_argument("--iters", type=int, default=1, help="timed iterations per path and round")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed iterations after each switch of path")
    p.add_argument("--rounds", type=int, default=5,
                   help="cycle through all paths this often (interleaving keeps the ratios "
                        "meaningful on a busy machine)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory runs (one fresh process per path)")
    p.add_argument("--memory-only", action="store_true", help="only the peak-memory runs")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in workers")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--peak-gflops", type=float, default=None,
                   help=f"fp32 peak in GFLOP/s (default: {CPU_PEAK_FP32:.0f} on CPU, by GPU name)")
    p.add_argument("--peak-gflops-bf16", type=float, default=None,
                   help="bf16 peak (default: 2x fp32 on CPUs with native bf16, else = fp32)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny preset at 96x128, batch 2, 2 rounds")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.img_size, args.batch_size = ["tiny"], [(96, 128)], [2]
        args.iters, args.warmup, args.rounds = 1, 1, 2
    if args.peak_gflops is None:
        args.peak_gflops = CPU_PEAK_FP32
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.worker is not None:
        print("RESULT " + json.dumps(measure(json.loads(args.worker))), flush=True)
        return []

    device = pick_device(args.device).type
    names = list(args.paths or (ABLATION + ("fast",) if args.ablation else ("reference", "fast")))
    if args.compile:
        names.append("fast+compile")
    if args.checkpointing:
        names.append("fast+ckpt")
    names = list(dict.fromkeys(names))
    settings = {n: resolve_path(n, device) for n in names}  # validates the names early
    machine = machine_info()
    load_start = loadavg()
    print(f"machine: {machine['cpu']} ({machine['logical_cpus']} logical CPUs, torch threads "
          f"{args.threads or machine['torch_threads']}, ISA {machine['cpu_isa']}, native bf16: "
          f"{machine['cpu_native_bf16']}), GPU: {machine['gpu']}, torch {machine['torch']}")
    print(f"device: {device}; load average at start: {load_start}")
    for n in names:
        print(f"  {n:<34} {dataclasses.asdict(settings[n])}")

    configs = []
    for preset in args.presets:
        from tutorial_lib.transunet import get_config

        sizes = args.img_size or [get_config(preset).img_size]
        for size in sizes:
            flops = forward_flops(preset, tuple(size))
            print(f"{preset} at {_fmt_size(size)}: {flops / 1e9:.2f} GFLOPs per image forward")
            for batch in args.batch_size:
                configs.append((preset, tuple(size), batch, flops))

    timing: dict[tuple, dict] = {}
    memory: dict[tuple, dict] = {}
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:5.0f}s] {msg}", file=sys.stderr, flush=True)

    for preset, size, batch, _ in configs:
        for mode in args.modes:
            todo = list(dict.fromkeys(settings[n].effective(mode) for n in names
                                      if not (mode == "infer" and settings[n].checkpointing)))
            label = {s: next(n for n in names if settings[n].effective(mode) == s) for s in todo}
            base = {"preset": preset, "img_size": list(size), "batch": batch, "mode": mode,
                    "device": device, "threads": args.threads}
            where = f"{preset} {_fmt_size(size)} b{batch} {mode}"
            # timing: all eager paths interleaved in one process; compiled ones in their own
            groups = () if args.memory_only else (
                [s for s in todo if not s.compile], [s for s in todo if s.compile])
            for group in groups:
                if not group:
                    continue
                res = run_job({**base, "paths": [dataclasses.asdict(s) for s in group],
                               "rounds": args.rounds, "iters": args.iters,
                               "warmup": args.warmup})
                for i, s in enumerate(group):
                    if "error" in res:
                        timing[(preset, size, batch, mode, s)] = {"error": res["error"]}
                        log(f"{where} {label[s]}: error {res['error'].splitlines()[-1:]}")
                        continue
                    rec = {**res["paths"][i], "threads": res["threads"]}
                    timing[(preset, size, batch, mode, s)] = rec
                    flat = [t for r in rec["wall_s"] for t in r]
                    log(f"{where} {label[s]}: {statistics.median(flat) * 1e3:.0f} ms/iter")
            # memory: a fresh process per path, so that each peak is its own
            for s in todo if args.memory else ():
                res = run_job({**base, "paths": [dataclasses.asdict(s)], "rounds": 1,
                               "iters": 1, "warmup": 1})
                memory[(preset, size, batch, mode, s)] = res
                log(f"{where} {label[s]}: peak "
                    + (f"{res['peak_mb']:.0f} MB" if "error" not in res else "error"))

    rows = []
    for preset, size, batch, flops in configs:
        for mode in args.modes:
            ref = None
            for n in names:
                s = settings[n]
                if mode == "infer" and s.checkpointing:
                    continue
                key = (preset, size, batch, mode, s.effective(mode))
                row = {"preset": preset, "img_size": list(size), "batch": batch, "mode": mode,
                       "path": n, "settings": dataclasses.asdict(s)}
                mem = memory.get(key, {})
                if args.memory_only:
                    row.update({"peak_mb": mem.get("peak_mb"), "mem_ratio": None,
                                "rss_after_build_mb": mem.get("rss_after_build_mb")})
                    if n == "reference":
                        ref = row
                    if ref is not None and row["peak_mb"] and ref["peak_mb"]:
                        row["mem_ratio"] = row["peak_mb"] / ref["peak_mb"]
                    rows.append(row)
                    continue
                rec = timing[key]
                if "error" in rec:
                    rows.append({**row, "error": rec["error"]})
                    continue
                wall = [t for r in rec["wall_s"] for t in r]
                cpu = [t for r in rec["cpu_s"] for t in r]
                med = statistics.median(wall)
                work = flops * batch * (3 if mode == "train" else 1)
                peak = peak_gflops(s.precision, device, machine["gpu"], args)
                row.update({
                    "median_s": med, "best_s": min(wall), "wall_s_by_round": rec["wall_s"],
                    "cpu_s_by_round": rec["cpu_s"], "warmup_s": rec["warmup_s"],
                    "img_per_s": batch / med,
                    "cpu_per_wall": statistics.median(cpu) / med,
                    "threads": rec["threads"],
                    "gflop_per_iter": work / 1e9, "gflops": work / med / 1e9,
                    "peak_gflops": peak, "peak_share": (work / med / 1e9 / peak) if peak else None,
                    "peak_mb": mem.get("peak_mb"),
                    "rss_after_build_mb": mem.get("rss_after_build_mb"),
                    "speedup": None, "speedup_best": None, "mem_ratio": None,
                })
                if n == "reference":
                    ref = row
                if ref is not None:
                    # the median over rounds of (reference time / this time) in the same round
                    ratios = [statistics.median(a) / statistics.median(b)
                              for a, b in zip(ref["wall_s_by_round"], rec["wall_s"])]
                    row["speedup"] = statistics.median(ratios)
                    row["speedup_best"] = ref["best_s"] / row["best_s"]
                    if row["peak_mb"] and ref["peak_mb"]:
                        row["mem_ratio"] = row["peak_mb"] / ref["peak_mb"]
                rows.append(row)

    load_end = loadavg()
    print()
    print(format_table(rows))
    print(f"\nload average at start {load_start}, at end {load_end} "
          f"({machine['logical_cpus']} logical CPUs); {time.perf_counter() - started:.0f} s")
    if load_end and machine["logical_cpus"] and max(load_start[0], load_end[0]) > machine["logical_cpus"]:
        print("warning: the machine was busy (load > CPUs): absolute numbers are low; the ratios "
              "of interleaved runs are the meaningful part", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python -m benchmarks.speed " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine, "device": device, "load_start": load_start, "load_end": load_end,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k != "worker"},
            "flops_per_image": {f"{p} {_fmt_size(sz)}": fl for p, sz, _, fl in configs},
            "results": rows,
        }
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
