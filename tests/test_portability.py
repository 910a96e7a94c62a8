"""The second nbval pass of `make test` runs under a different numeric environment. Show that it really is one.

`make test` runs every notebook twice: once as the machine is, once with the settings below. That second pass only
proves anything if those settings change the bits of float results on this machine. This test computes a few
typical operations (matmul, convolution, softmax, GELU, LayerNorm) in two subprocesses, one with the settings and
one without, and asserts that their results differ in the last bits while agreeing to fp32 precision.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, torch, torch.nn.functional as F
torch.manual_seed(0)
a, b = torch.randn(257, 263), torch.randn(263, 129)
x, w = torch.randn(2, 16, 45, 61), torch.randn(32, 16, 3, 3)
results = {
    "matmul": a @ b,
    "conv2d": F.conv2d(x, w, padding=1),
    "softmax": torch.randn(1000, 37).softmax(-1),
    "gelu": F.gelu(torch.randn(10007)),
    "layer_norm": F.layer_norm(torch.randn(64, 768), (768,)),
}
print(json.dumps({k: v.flatten().tolist() for k, v in results.items()}))
"""


def portable_env() -> dict[str, str]:
    """The settings of the second pass, read from the Makefile (the one place they are written)."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("PORTABLE_ENV"):
            pairs = line.split("=", 1)[1].split()
            return dict(p.split("=", 1) for p in pairs)
    raise AssertionError("Makefile has no PORTABLE_ENV line")


def run_probe(extra: dict[str, str]) -> dict[str, torch.Tensor]:
    env = {k: v for k, v in os.environ.items() if k not in portable_env()}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return {k: torch.tensor(v) for k, v in json.loads(out.stdout).items()}


def test_portable_env_names_the_four_settings():
    env = portable_env()
    assert set(env) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS"}


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT",
                    reason="this CPU has no vector ISA above ATen's default kernels: both passes are the same here")
def test_second_pass_changes_float_results():
    native = run_probe({"OMP_NUM_THREADS": "2"})
    portable = run_probe(portable_env())
    differing = [k for k in native if not torch.equal(native[k], portable[k])]
    # Different bits, same maths: every result still agrees to fp32 precision (relative to its scale).
    for k in native:
        scale = native[k].abs().max()
        assert (native[k] - portable[k]).abs().max() <= 1e-5 * scale, k
    assert len(differing) >= 3, f"the second numeric environment changed only {differing}"
