"""What every checker shares: the verdict, calling the learner's code, comparing, copying weights.

Behaviour of every ``check_*``: on success it prints one line starting with "✓" and returns
None; when the learner's code raises ``NotImplementedError`` (the exercise stub as shipped) it
prints one line starting with "…" saying the exercise is not attempted yet and returns, so a
notebook runs top to bottom; on failure it raises ``AssertionError`` whose message starts with "✗" and says what is
wrong (so the notebook cell fails visibly). The text never contains raw float digits, only
orders of magnitude, so it reads the same on every machine. Random inputs come from a fixed
seed inside ``torch.random.fork_rng``: a check never changes the notebook's random state.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

ATOL = RTOL = 1e-5
TOL_TEXT = "max |difference| < 1e-5"


class Wrong(Exception):
    """Raised inside a checker with the diagnosis; turned into an AssertionError by @checker."""


def checker(func: Callable) -> Callable:
    """Run ``func`` with a fixed seed; print "✓ name: verdict" or raise AssertionError."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        failure = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            try:
                verdict = func(*args, **kwargs)
            except (Wrong, NotImplementedError) as e:
                if _not_attempted(e):
                    print(f"… {func.__name__}: not attempted yet. Write your version in the cell above "
                          "(replace `raise NotImplementedError`), run it, then run this cell again. "
                          "A solution is hidden below.")
                    return
                failure = e
        if failure is not None:  # chained to an error in the learner's code, if that was it
            raise AssertionError(f"✗ {func.__name__}: {failure}") from failure.__cause__
        print(f"✓ {func.__name__}: {verdict}")

    return wrapper


def _not_attempted(error: BaseException | None) -> bool:
    """True when the learner's code raised NotImplementedError: the exercise stub, not yet filled in."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NotImplementedError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def call(fn: Callable, *args, what: str):
    """Call the learner's ``fn``; an error in their code fails the check with their traceback."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - any error in the learner's code is the diagnosis
        raise Wrong(f"{what} raised {type(e).__name__}: {e}") from e


def shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def magnitude(x: float) -> str:
    """'of order 1e-3' for 0.0042: an order of magnitude, the same text on every CPU."""
    if math.isnan(x) or math.isinf(x):
        return "not finite (NaN or inf)"
    if x == 0:
        return "0"
    return f"of order 1e{math.floor(math.log10(x))}"


def close(a, b) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().to(b.dtype), b.detach(), atol=ATOL, rtol=RTOL))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return "max |difference| is " + magnitude((a.detach().double() - b.detach().double())
                                               .abs().max().item())


def first_match(actual: torch.Tensor, candidates: Sequence[tuple[str, Callable]]) -> str | None:
    """The message of the first candidate (message, thunk) whose tensor equals ``actual``."""
    for message, make in candidates:
        try:
            expected = make()
        except (RuntimeError, ValueError):
            continue
        if close(actual, expected):
            return message
    return None


def expect_tensor(x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise Wrong(f"{what} should be a torch.Tensor, got {type(x).__name__}")
    return x


def expect_shape(x: torch.Tensor, expected: Sequence[int], what: str, hint: str = "") -> None:
    if tuple(x.shape) != tuple(expected):
        raise Wrong(f"{what} has shape {shape(x)}, expected {tuple(expected)}{hint}")


def check_gradient(out: torch.Tensor, inputs: dict[str, torch.Tensor],
                   reference: dict[str, torch.Tensor] | None = None) -> None:
    """Gradients of sum(out * g) reach every input and (optionally) equal the reference's
    (max |difference| < 1e-5 + 1e-5 x the largest reference gradient)."""
    if not out.requires_grad:
        raise Wrong("your output is detached from the graph, so no gradient can reach the inputs: "
                    "avoid .detach(), .data, .numpy(), .item() or torch.tensor(...) on "
                    "intermediate results and torch.no_grad() inside the function")
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, list(inputs.values()), g, allow_unused=True)
    for (name, _), grad in zip(inputs.items(), grads):
        if grad is None:
            raise Wrong(f"no gradient reaches {name}: its path to the output is cut (.detach(), "
                        ".data, torch.no_grad() or a new tensor built from its values)")
    if reference is not None:
        ref_out = reference.pop("__out__")
        ref_grads = torch.autograd.grad(ref_out, list(reference.values()), g)
        for (name, _), grad, ref in zip(inputs.items(), grads, ref_grads):
            scale = ref.abs().max().item()  # compared relative to the largest gradient
            if (grad - ref).abs().max().item() > ATOL + RTOL * scale:
                raise Wrong(f"the output is right but the gradient with respect to {name} is not "
                            f"({max_diff(grad, ref)}): part of the computation runs outside "
                            "autograd (torch.no_grad(), .detach() or .data)")


def n_positional(fn: Callable) -> int:
    """How many positional arguments ``fn`` accepts (a large number for *args)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 99
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return 99
    return sum(p.kind in kinds for p in params)


# --------------------------------------------------------------------------------------------
# Weights: perturb the defaults, copy a learner's module into the reference
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def perturb_defaults_(module: nn.Module) -> nn.Module:
    """Replace constant parameters (zero biases, unit norm scales, zero position embeddings)
    and BatchNorm statistics with random values, so that forgetting one of them shows."""
    for p in module.parameters():
        if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
            p.add_(0.1 * torch.randn_like(p))
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn_like(b))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand_like(b))
    return module


def _entries(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")]


def shape_diff(src: nn.Module, dst: nn.Module) -> tuple[list[tuple], list[tuple]]:
    """(shapes the reference has and ``src`` lacks, shapes ``src`` has in excess), with repeats."""
    extra = [tuple(v.shape) for _, v in _entries(src)]
    missing = []
    for _, v in _entries(dst):
        if tuple(v.shape) in extra:
            extra.remove(tuple(v.shape))
        else:
            missing.append(tuple(v.shape))
    return missing, extra


def structure_problem(src: nn.Module, dst: nn.Module, src_name: str = "your module") -> str | None:
    """None when both hold tensors of the same shapes (any order); else what is missing/extra,
    with the reference's names for each missing shape."""
    missing, extra = shape_diff(src, dst)
    parts = []
    for s in sorted(set(missing), key=missing.index)[:4]:
        names = [k for k, v in _entries(dst) if tuple(v.shape) == s]
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        parts.append(f"{src_name} lacks {missing.count(s)} tensor(s) of shape {s} (the "
                     f"reference's {', '.join(names[:4])}{more} have that shape)")
    for s in sorted(set(extra), key=extra.index)[:4]:
        parts.append(f"{src_name} has {extra.count(s)} extra tensor(s) of shape {s}")
    return "; ".join(parts) or None


def _leaves(module: nn.Module) -> list[tuple[tuple, dict[str, torch.Tensor]]]:
    """Modules holding tensors directly: (signature, their tensors), in registration order."""
    out = []
    for m in module.modules():
        own = {k: v for k, v in itertools.chain(m.named_parameters(recurse=False),
                                                m.named_buffers(recurse=False))
               if v is not None and not k.endswith("num_batches_tracked")}
        if own:
            out.append((tuple((k, tuple(v.shape)) for k, v in own.items()), own))
    return out


def train_mode_without_dropout_(model: nn.Module) -> nn.Module:
    """Train mode (BatchNorm normalises with the batch's statistics) with every dropout off:
    deterministic, and the signal does not fade through a deep net with random weights."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return model


def compare_module(y: torch.Tensor, src: nn.Module, ref: nn.Module, run_ref: Callable,
                   variants: Callable, what: str, layout: str) -> None:
    """Pass when ``y`` equals ``run_ref()`` for some way of copying ``src``'s weights into
    ``ref``; otherwise raise Wrong with the first typical mistake (``variants()``: (message,
    thunk) pairs computed from ``ref``'s weights) that reproduces ``y``."""
    ref_y = None
    for _ in copy_assignments(src, ref):
        ref_y = run_ref()
        if close(y, ref_y):
            return
        with torch.no_grad():
            found = first_match(y, variants())
        if found:
            raise Wrong(f"{found} [{what}]")
    raise Wrong(f"the output differs from the reference with the same weights: "
                f"{max_diff(y, ref_y)}. {layout} [{what}]")


def _orders(sizes: list[int]) -> Iterator[tuple[tuple[int, ...], ...]]:
    """One permutation per group, every combination, generated lazily, the identity first."""
    if not sizes:
        yield ()
        return
    for perm in itertools.permutations(range(sizes[0])):
        for rest in _orders(sizes[1:]):
            yield (perm, *rest)


def copy_assignments(src: nn.Module, dst: nn.Module, limit: int = 24) -> Iterator[None]:
    """Copy ``src``'s tensors into ``dst`` in each plausible way; yield after each.

    By name when the state_dict keys and shapes agree; otherwise module by module (a conv to a
    conv of the same shapes, a norm to a norm), trying every order among modules of identical
    shapes; otherwise tensor by tensor in order among tensors of the same shape.
    """
    s, d = dict(_entries(src)), dict(_entries(dst))
    if s.keys() == d.keys() and all(s[k].shape == d[k].shape for k in s):
        dst.load_state_dict(src.state_dict(), strict=False)
        yield
        return
    src_leaves, dst_leaves = _leaves(src), _leaves(dst)
    if sorted(sig for sig, _ in src_leaves) == sorted(sig for sig, _ in dst_leaves):
        groups: dict[tuple, tuple[list, list]] = {}
        for sig, t in src_leaves:
            groups.setdefault(sig, ([], []))[0].append(t)
        for sig, t in dst_leaves:
            groups[sig][1].append(t)
        sizes = [len(a) for a, _ in groups.values()]
        for choice in itertools.islice(_orders(sizes), limit):  # lazily: 16 modules alike have 16! orders
            with torch.no_grad():
                for (a, b), perm in zip(groups.values(), choice):
                    for i, j in enumerate(perm):
                        for k in a[i]:
                            b[j][k].copy_(a[i][k])
            yield
        return
    queues: dict[tuple, list[torch.Tensor]] = {}
    for _, v in _entries(src):
        queues.setdefault(tuple(v.shape), []).append(v)
    with torch.no_grad():
        for _, v in _entries(dst):
            v.copy_(queues[tuple(v.shape)].pop(0))
    yield
