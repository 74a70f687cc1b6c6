r"""Exercise specs of 03-stochastic-gradient-descent: mini-batch SGD on linear regression.

- ``minibatch_indices`` -- one epoch of shuffled batches: ONE permutation
  ``torch.randperm(n, generator=generator)`` cut into consecutive slices.
- ``minibatch_gradient`` -- the MSE gradient on the batch ``idx`` only,
  $\big(\frac{2}{|B|} X_B^\top r_B, \frac{2}{|B|} \sum r_B\big)$.
- ``sgd_epoch`` -- one SGD step per shuffled mini-batch, inputs untouched.
- ``lr_schedule`` -- the inverse-time decay $\eta_0 / (1 + \text{decay}\cdot t)$.
- ``predict_noise_ratio``, ``predict_best_batch`` -- predict-then-run questions:
  how much averaging 8 -> 32 independent batch gradients shrinks their noise, and
  which batch size ends 10 epochs of the lesson's run at the lowest loss.

The shuffling exercises run as flows (:data:`INDICES_FLOW`, :data:`SGD_FLOW`):
the generator is made from the case's seed, one or more epochs run with it,
and what is observed is the batches or parameters, the generator's state after
each epoch (exactly one ``randperm`` per epoch) and whether the global random
state moved (the flow restores it). Hidden cases are drawn from each
verification's seed: sizes, batch sizes (1, all, larger than the data), data,
generator seeds, learning rates (small enough for every step to contract, and
0), epochs, steps and decays.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Callable, Iterator

import numpy as np
import torch

from course.data import make_regression
from course.exercises.spec import Case, Exercise, Mistake, Question, Run, run_case
from course.exercises.values import COURSE_SGD, TORCH_SGD, fmt, real, snap, type_name

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: The course's answer keys, disabled while a submission is graded.
FORBIDDEN = [
    "course.stochastic.minibatch_indices", "course.stochastic.minibatch_gradient",
    "course.stochastic.sgd_epoch", "course.stochastic.lr_schedule",
    "course.stochastic.mse_gradient", "course.stochastic.per_example_gradients",
    "course.data.iterate_minibatches", "course.data.make_loader",
    *TORCH_SGD, *COURSE_SGD,
]

# torch's own functions, taken before any learner code runs (which may patch them).
_TENSOR = torch.Tensor
_GENERATOR = torch.Generator
_EQUAL = torch.equal
_CAT = torch.cat
_ARANGE = torch.arange
_AS_TENSOR = torch.as_tensor
_RANDPERM = torch.randperm
_GET_RNG = torch.random.get_rng_state
_SET_RNG = torch.random.set_rng_state
_INT64, _FLOAT64 = torch.int64, torch.float64

GLOBAL_RNG_HINT = (
    "you shuffled with the global random number generator (torch.randperm(n) "
    "without generator=, torch.manual_seed, torch.randint ...): use the generator "
    "passed in, torch.randperm(n, generator=generator), so the order depends only "
    "on its seed and no other code changes it.")


def _generator(seed: int) -> torch.Generator:
    return _GENERATOR().manual_seed(seed)


class Outcome:
    """What a flow saw: the learner's return value of every epoch, snapshots
    taken right after each call, the generator's state after each epoch, and
    whether the global random state moved (it is restored afterwards)."""

    def __init__(self) -> None:
        self.returns: list[Any] = []
        self.snaps: list[list[Any]] = []
        self.states: list[torch.Tensor] = []
        self.global_changed = False


def _is_two_epochs(case: Case) -> bool:
    return case.data[1] > 1


# --------------------------------------------------------------------------
# the reference answers (plain torch: the course's answer keys are forbidden)
# --------------------------------------------------------------------------

def minibatch_indices(n: int, batch_size: int, generator: torch.Generator) -> list[Any]:
    """One permutation of 0 .. n-1 from ``generator``, cut into slices."""
    return list(_RANDPERM(n, generator=generator).split(batch_size))


def mse_gradient(w: Any, b: Any, X: Any, y: Any) -> tuple[Any, Any]:
    """The full-batch gradient of the mean squared error."""
    r = X @ w + b - y
    return 2 * X.T @ r / len(y), 2 * r.mean()


def minibatch_gradient(w: Any, b: Any, X: Any, y: Any, idx: Any) -> tuple[Any, Any]:
    """The mean squared error's gradient on the rows ``idx``."""
    return mse_gradient(w, b, X[idx], y[idx])


def sgd_epoch(w: Any, b: Any, X: Any, y: Any, lr: float, batch_size: int,
              generator: torch.Generator) -> tuple[Any, Any]:
    """One SGD step per batch of :func:`minibatch_indices`."""
    for idx in minibatch_indices(len(y), batch_size, generator):
        grad_w, grad_b = minibatch_gradient(w, b, X, y, idx)
        w, b = w - lr * grad_w, b - lr * grad_b
    return w, b


def lr_schedule(step: int, lr0: float, decay: float) -> float:
    """Inverse-time decay, lr0 at step 0."""
    return lr0 / (1 + decay * step)


# --------------------------------------------------------------------------
# Exercise 3.1: minibatch_indices
# --------------------------------------------------------------------------

def _indices_flow(fn: Any, case: Case) -> Outcome:
    """``epochs`` calls of ``fn(n, batch_size, generator)`` with one generator
    seeded from the case (``case.data = (seed, epochs)``)."""
    n, batch_size = case.args
    seed, epochs = case.data
    gen, out, before = _generator(seed), Outcome(), _GET_RNG()
    try:
        for _ in range(epochs):
            out.returns.append(fn(n, batch_size, gen))
            out.states.append(gen.get_state())
    finally:
        out.global_changed = not _EQUAL(before, _GET_RNG())
        _SET_RNG(before)
    return out


INDICES_FLOW = _indices_flow


def _batches(out: Any) -> Any:
    """The batches as int64 tensors, or a description of what is wrong."""
    if type(out) not in (list, tuple):
        return type_name(out)
    batches = []
    for idx in out:
        if type(idx) is not _TENSOR or idx.dtype != _INT64 or idx.ndim != 1:
            return ["not a 1-D int64 tensor", type_name(idx)]
        batches.append(idx.clone())
    return batches


def _indices_observe(run: Run) -> Any:
    out: Outcome = run.result
    seen: list[Any] = []
    for result, state in zip(out.returns, out.states):
        seen += [_batches(result), state]
    seen.append(not out.global_changed)
    return seen


def _batch_type_problem(result: Any) -> str | None:
    name = "minibatch_indices"
    if result is None:
        return f"`{name}` returned None: did you forget `return batches`?"
    if isinstance(result, torch.Tensor):
        return (f"`{name}` returned one tensor; return a list of index tensors, "
                "one per batch, e.g. `list(perm.split(batch_size))`.")
    if not isinstance(result, (list, tuple)):
        return (f"`{name}` must return a list of index tensors, got "
                f"{type(result).__name__}" + (": wrap it in list(...)."
                                              if hasattr(result, "__iter__") else "."))
    for k, batch in enumerate(result):
        if not isinstance(batch, torch.Tensor):
            return (f"batch {k} is a {type(batch).__name__}; every batch must be "
                    "a 1-D tensor of indices (slice the tensor from torch.randperm).")
        if batch.dtype != _INT64 or batch.ndim != 1:
            return (f"batch {k} has dtype {batch.dtype} and shape "
                    f"{tuple(batch.shape)}; index batches must be 1-D int64 (LongTensor), "
                    "as torch.randperm returns them.")
    return None


_NOT_SHUFFLED = ("cut a random permutation, torch.randperm(n, generator=generator), "
                 "not torch.arange(n).")
_DROPPED_LAST = "keep it (drop_last=False); every example must be used once per epoch."
_OUT_OF_RANGE = "use torch.randperm(n, generator=generator), which permutes 0 .. n-1."
_OVERLAP = ("draw ONE permutation per epoch and cut it into consecutive slices; a new "
            "draw per batch, or torch.randint (sampling with replacement), repeats "
            "examples.")
_MISSING = "the slices must cover the whole permutation, including the last smaller one."
_SIZES = ("consecutive slices of batch_size examples, only the last may be smaller "
          "(perm.split(batch_size) or perm[i:i + batch_size]).")
_IGNORES_GENERATOR = (
    "your batches do not depend on the generator passed in: did you create your own "
    "generator or seed one yourself? Use torch.randperm(n, generator=generator) with "
    "the one you get.")
_ORDER = ("the order differs from torch.randperm(n, generator=generator): draw exactly "
          "one permutation with that call and cut it in order (don't draw one per "
          "batch, don't sort or reverse it).")
_NOT_USED = (
    "the generator passed in was not used (its state did not move): you drew from a "
    "copy or a new generator seeded like it, so every epoch would get the same order. "
    "Call torch.randperm(n, generator=generator) with the generator itself.")
_DREW_TWICE = ("the batches are right but you drew from the generator more than once; "
               "draw exactly one permutation per epoch so the next epoch continues the "
               "same random stream.")
_FRESH_EPOCH = ("every epoch must draw a fresh permutation from the same generator: "
                "don't re-seed it or copy it inside the function.")


def _coverage_problem(everything: torch.Tensor, sizes: list[int], n: int,
                      batch_size: int) -> str:
    """Explain why the batches are not a partition of 0 .. n-1."""
    counts = torch.bincount(everything.clamp(0, n), minlength=n + 1)[:n] \
        if everything.numel() else torch.zeros(n, dtype=_INT64)
    out_of_range = bool(((everything < 0) | (everything >= n)).any())
    if (n % batch_size and everything.numel() == n - n % batch_size
            and all(s == batch_size for s in sizes) and int(counts.max()) <= 1):
        return (f"the batches hold {everything.numel()} of the {n} examples: you "
                f"dropped the last, smaller batch of {n % batch_size}.\n  Diagnosis: "
                + _DROPPED_LAST)
    if out_of_range:
        return f"some indices are outside 0 .. {n - 1}.\n  Diagnosis: " + _OUT_OF_RANGE
    missing = int((counts == 0).sum())
    repeated = int((counts > 1).sum())
    if repeated:
        return (f"{repeated} examples appear more than once and {missing} never "
                "(batches overlap).\n  Diagnosis: " + _OVERLAP)
    return f"{missing} of the {n} examples are in no batch.\n  Diagnosis: " + _MISSING


def _joined(batches: list[torch.Tensor]) -> torch.Tensor:
    return _CAT(list(batches)) if len(batches) else torch.zeros(0, dtype=_INT64)


def _same_batches(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(_EQUAL(x, y) for x, y in zip(a, b))


def _indices_contract(got: Run, expected: Run) -> str | None:
    out: Outcome = got.result
    for result in out.returns:
        problem = _batch_type_problem(result)
        if problem:
            return problem
    n, batch_size = got.case.args
    if _is_two_epochs(got.case):
        for epoch, (mine, want) in enumerate(zip(out.returns, expected.result.returns), 1):
            if not _same_batches(list(mine), want):
                return (f"epoch {epoch}: expected {fmt(_joined(want))}, got "
                        f"{fmt(_joined(list(mine)))}.\n  Diagnosis: {_FRESH_EPOCH}")
        return None
    if out.global_changed:
        return f"the global random state changed.\n  Diagnosis: {GLOBAL_RNG_HINT}"
    batches = list(out.returns[0])
    sizes = [len(b) for b in batches]
    everything = _joined(batches)
    if not _EQUAL(everything.sort().values, _ARANGE(n)):
        return _coverage_problem(everything, sizes, n, batch_size)
    if n > 1 and _EQUAL(everything, _ARANGE(n)):
        return ("the batches are 0, 1, 2, ... in order: nothing was shuffled.\n"
                "  Diagnosis: " + _NOT_SHUFFLED)
    expected_sizes = [len(b) for b in expected.result.returns[0]]
    if sizes != expected_sizes:
        return (f"batch sizes {sizes}, expected {expected_sizes}.\n  Diagnosis: "
                + _SIZES)
    return None


def _indices_generator_used(got: Run, expected: Run) -> str | None:
    """Right batches, but the generator did not advance by exactly one permutation."""
    if not _same_batches(list(got.result.returns[0]), expected.result.returns[0]):
        return None
    seed = got.case.data[0]
    if _EQUAL(got.result.states[0], _generator(seed).get_state()):
        return _NOT_USED
    return _DREW_TWICE


def _indices_diagnose(got: Run, expected: Run) -> str | None:
    """Same batches from a differently seeded generator: it is ignored."""
    other = Case(got.case.label, got.case.args, data=(got.case.data[0] + 12345, 1))
    try:
        again = _indices_flow(got.fn, other).returns[0]
        ignored = _same_batches(list(again), list(got.result.returns[0]))
    except Exception:  # noqa: BLE001 - only a diagnosis
        ignored = False
    return _IGNORES_GENERATOR if ignored else _ORDER


def _indices_show(run: Run) -> Any:
    return _joined(list(run.result.returns[0]))


def _indices_hidden(rng: np.random.Generator) -> Iterator[Case]:
    def seed() -> int:
        return int(rng.integers(2 ** 62))
    for _ in range(4):                                  # random sizes and batch sizes
        n = int(rng.integers(1, 200))
        yield Case("a random case", (n, int(rng.integers(1, n + 6))),
                   data=(seed(), int(rng.integers(1, 4))))
    n = int(rng.integers(500, 2000))                     # a large data set
    yield Case("a large data set", (n, int(rng.integers(16, 129))), data=(seed(), 2))
    n = int(rng.integers(2, 30))
    yield Case("a batch larger than the data", (n, n + int(rng.integers(1, 10))),
               data=(seed(), 1))
    n = int(rng.integers(2, 30))
    yield Case("the whole data set as one batch", (n, n), data=(seed(), 1))
    yield Case("batches of one", (int(rng.integers(2, 30)), 1), data=(seed(), 1))
    n = int(rng.integers(10, 60))
    yield Case("several epochs", (n, int(rng.integers(2, 9))),
               data=(seed(), int(rng.integers(2, 4))))


def _keep_perm(n: int, batch_size: int, generator: Any) -> torch.Tensor:
    return _RANDPERM(n, generator=generator)


def _halves(perm: torch.Tensor) -> list[torch.Tensor]:
    """Two batches, whatever the batch size."""
    return [perm[: len(perm) // 2], perm[len(perm) // 2:]]


def _first_of_two(n: int, batch_size: int, generator: Any) -> list[torch.Tensor]:
    """The right batches, but a second permutation drawn after them."""
    perm = _RANDPERM(n, generator=generator)
    _RANDPERM(n, generator=generator)
    return list(perm.split(batch_size))


MINIBATCH_INDICES = Exercise(
    grade_id="test_minibatch_indices",
    name="minibatch_indices",
    reference=minibatch_indices,
    cases=[Case(f"n={n}, batch_size={size}, seed={seed}", (n, size), data=(seed, 1))
           for n, size, seed in [(10, 4, 0), (12, 4, 1), (7, 7, 2), (5, 1, 3), (3, 5, 4),
                                 (100, 32, 5)]] + [
        Case("two epochs in a row, n=10, batch_size=3, seed=6", (10, 3), data=(6, 2))],
    observe=_indices_observe,
    call=_indices_flow,
    show=_indices_show,
    passed="minibatch_indices: 6 cases give the batches of "
           "torch.randperm(n, generator=generator) in order, the last one smaller; "
           "a new order every epoch, global RNG untouched",
    hidden=_indices_hidden,
    rules=[_indices_contract],
    after=[_indices_generator_used],
    diagnose=_indices_diagnose,
    mistakes=[
        Mistake("own_generator", _IGNORES_GENERATOR,
                lambda n, size, g: minibatch_indices(n, size, _generator(42))),
        Mistake("reversed_permutation", _ORDER,
                lambda n, size, g: list(_RANDPERM(n, generator=g).flip(0).split(size))),
        Mistake("global_rng", GLOBAL_RNG_HINT,
                lambda n, size, g: list(_RANDPERM(n).split(size))),
        Mistake("not_shuffled", _NOT_SHUFFLED,
                lambda n, size, g: list(_ARANGE(n).split(size))),
        Mistake("dropped_last_batch", _DROPPED_LAST,
                lambda n, size, g: [p[i:i + size] for p in [_keep_perm(n, size, g)]
                                    for i in range(0, n - n % size, size)]),
        Mistake("new_permutation_per_batch", _OVERLAP,
                lambda n, size, g: [_RANDPERM(n, generator=g)[:size]
                                    for _ in range(math.ceil(n / size))]),
        Mistake("sampled_with_replacement", _OVERLAP,
                lambda n, size, g: list(torch.randint(n, (n,), generator=g).split(size))),
        Mistake("one_based_indices", _OUT_OF_RANGE,
                lambda n, size, g: list((_RANDPERM(n, generator=g) + 1).split(size))),
        Mistake("first_example_skipped", _MISSING,
                lambda n, size, g: list(_RANDPERM(n, generator=g)[1:].split(size))),
        Mistake("wrong_batch_sizes", _SIZES,
                lambda n, size, g: _halves(_RANDPERM(n, generator=g))),
        Mistake("copied_generator", _NOT_USED,
                lambda n, size, g: minibatch_indices(n, size, _generator(g.initial_seed()))),
        Mistake("drew_twice", _DREW_TWICE,
                lambda n, size, g: _first_of_two(n, size, g)),
        Mistake("reseeded_generator", _FRESH_EPOCH,
                lambda n, size, g: minibatch_indices(n, size, g.manual_seed(g.initial_seed()))),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 3.2: minibatch_gradient
# --------------------------------------------------------------------------

def _regression(n: int, d: int, seed: int, dtype: torch.dtype = _FLOAT64,
                ) -> tuple[torch.Tensor, ...]:
    """A small regression problem and a starting point (w, b) away from the fit."""
    g = _generator(1000 + seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = X @ torch.randn(d, generator=g, dtype=dtype) + 0.5 + 0.3 * torch.randn(
        n, generator=g, dtype=dtype)
    w = torch.randn(d, generator=g, dtype=dtype)
    b = torch.randn((), generator=g, dtype=dtype)
    return X, y, w, b


def _problem(n: int, d: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Random float64 (w, b, X, y)."""
    x, y = rng.normal(size=(n, d)), rng.normal(size=n)
    w, b = rng.normal(size=d), float(rng.normal())
    return (torch.tensor(w), torch.tensor(b, dtype=_FLOAT64), torch.tensor(x),
            torch.tensor(y))


def _flat(pair: Any) -> torch.Tensor:
    """``(w, b)`` as one vector ``[w..., b]`` for messages."""
    first, second = pair
    return _CAT([first.detach().reshape(-1), _AS_TENSOR(second).detach().reshape(1)
                 .to(first.dtype)])


def _pair(result: Any) -> tuple[Any, Any]:
    """The two items of a returned pair (anything else: two type names)."""
    if type(result) in (tuple, list) and len(result) == 2:
        return result[0], result[1]
    return type_name(result), type_name(result)


def _scalar(x: Any) -> Any:
    """A returned bias: a tensor snapshot (a Python or numpy float as a tensor)."""
    if type(x) in (float, np.float64):
        return torch.tensor(float(x), dtype=_FLOAT64)
    return snap(x)


def _shape(x: Any) -> Any:
    return list(x.shape) if type(x) is _TENSOR else None


def _pair_problem(result: Any, name: str, d: int, what: str) -> str | None:
    """What is wrong with a returned pair (vector of length d, scalar), if anything."""
    if result is None:
        return f"`{name}` returned None: did you forget `return {what}`?"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return (f"`{name}` must return a pair `{what}`, got {type(result).__name__}"
                + (f" of length {len(result)}" if isinstance(result, (tuple, list))
                   else "") + ".")
    first, second = result
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != (d,):
        shape = (f"shape {tuple(first.shape)}" if isinstance(first, torch.Tensor)
                 else type(first).__name__)
        return (f"the first element of `{what}` must be a tensor of shape ({d},) "
                f"like w, got {shape}.")
    if isinstance(second, torch.Tensor):
        if second.ndim != 0:
            return (f"the second element of `{what}` must be a scalar (shape ()) like b, "
                    f"got shape {tuple(second.shape)}: use `.sum()`/`.mean()` of the "
                    "residuals, not a 1-element slice.")
    elif not isinstance(second, (int, float, np.floating, np.integer)) \
            or isinstance(second, bool):
        return (f"the second element of `{what}` must be a scalar tensor, got "
                f"{type(second).__name__}.")
    return None


def _is_float32(case: Case) -> bool:
    return case.args[0].dtype != _FLOAT64


_TB = torch._C.TensorBase     # immutable: its methods are torch's, whatever the learner patched


def _values(t: torch.Tensor) -> list[float]:
    """A tensor's values as Python floats, flattened."""
    return [float(v) for v in _TB.tolist(_TB.reshape(_TB.detach(t), (-1,)))]


def _float32_truth(case: Case) -> list[float]:
    """The batch gradient ``[grad_w..., grad_b]`` of a case, in plain Python floats."""
    w, b, X, y, idx = case.args
    w, b = _values(w), _values(b)[0]
    rows = [[float(v) for v in row] for row in _TB.tolist(_TB.detach(X))]
    targets, batch = _values(y), [int(i) for i in _TB.tolist(idx)]
    residuals = [sum(x * c for x, c in zip(rows[i], w)) + b - targets[i] for i in batch]
    size = len(batch)
    grad_w = [2 * sum(r * rows[i][j] for r, i in zip(residuals, batch)) / size
              for j in range(len(w))]
    return grad_w + [2 * sum(residuals) / size]


def _gradient_observe(run: Run) -> Any:
    gw, gb = _pair(run.result)
    if _is_float32(run.case):
        # float32 rounding differs between correct implementations: observe whether
        # the answer is within float32 accuracy of the float64 truth, and its scale
        # along it (which tells the classic mistakes apart). Decided in plain
        # Python on torch's own C methods: nothing the learner's code patched.
        gb = _scalar(gb)
        if type(gw) is not _TENSOR or type(gb) is not _TENSOR:
            return [type_name(gw), type_name(gb)]
        mine = _values(gw) + _values(gb)
        truth = _float32_truth(run.case)
        if _shape(gw) != [len(truth) - 1] or _shape(gb) != []:
            return [_shape(gw), _shape(gb)]
        scale = 1e-5 * (1.0 + max(abs(t) for t in truth))
        close = all(abs(m - t) <= scale + 1e-5 * abs(t) for m, t in zip(mine, truth))
        ratio = sum(m * t for m, t in zip(mine, truth)) / sum(t * t for t in truth)
        return [_shape(gw), _shape(gb), close, round(ratio, 4), *[snap(a) for a in run.args]]
    gb = _scalar(gb)
    return [snap(gw), _shape(gw), gb, _shape(gb), *[snap(a) for a in run.args]]


def _gradient_contract(got: Run, expected: Run) -> str | None:
    name = "minibatch_gradient"
    problem = _pair_problem(got.result, name, got.case.args[2].shape[1], "grad_w, grad_b")
    if problem:
        return problem
    if not all(_EQUAL(a, o) for a, o in zip(got.args, got.case.args)):
        return (f"`{name}` changed its inputs in place; compute the gradient without "
                "modifying w, b, X, y or idx.")
    return None


_SHOWN_GRADIENT = "  (values shown: grad_w then grad_b)"


def _gradient_diagnose(got: Run, expected: Run) -> str:
    rtol = 1e-5 if _is_float32(got.case) else 1e-7
    gw, want = got.result[0].detach(), expected.result[0]
    part = "grad_w" if not (gw.shape == want.shape and bool(torch.allclose(
        gw.double(), want.double(), rtol=rtol, atol=1e-9))) else "grad_b"
    return (f"{part} is off; the batch gradient is (2/|B|) X_B^T r_B for w and "
            "(2/|B|) sum(r_B) for b, with r_B = X_B w + b - y_B." + _SHOWN_GRADIENT)


def _residual(w: Any, b: Any, X: Any, y: Any, idx: Any) -> Any:
    return X[idx] @ w + b - y[idx]


def _gradient_mistake(name: str, text: str | Callable[[Run], str],
                      scale: Callable[[int, int], float]) -> Mistake:
    """The batch gradient times ``scale(|B|, n)``."""
    def wrong(w: Any, b: Any, X: Any, y: Any, idx: Any) -> tuple[Any, Any]:
        gw, gb = minibatch_gradient(w, b, X, y, idx)
        factor = scale(len(idx), len(y))
        return gw * factor, gb * factor
    diagnosis = (lambda run: text(run) + _SHOWN_GRADIENT) if callable(text) \
        else text + _SHOWN_GRADIENT
    return Mistake(name, diagnosis, wrong)


def _sizes(run: Run) -> tuple[int, int]:
    return len(run.case.args[4]), len(run.case.args[3])


def _gradient_hidden(rng: np.random.Generator) -> Iterator[Case]:
    n1, n2, n3 = (int(v) for v in rng.integers(2, 50, size=3))
    for label, n, d, size in (
            ("a random batch", n1, int(rng.integers(1, 7)), int(rng.integers(2, n1 + 1))),
            ("one feature, the whole data set", n2, 1, n2),
            ("a batch of one", n3, int(rng.integers(1, 7)), 1),
            ("a random problem", int(rng.integers(2, 60)), int(rng.integers(1, 7)), None),
            ("a random problem", int(rng.integers(2, 60)), int(rng.integers(1, 7)), None)):
        size = int(rng.integers(1, n + 1)) if size is None else size
        w, b, x, y = _problem(n, d, rng)
        yield Case(label, (w, b, x, y, torch.tensor(rng.permutation(n)[:size])))


def _gradient_case(label: str, n: int, d: int, idx: torch.Tensor, dtype: torch.dtype,
                   k: int) -> Case:
    X, y, w, b = _regression(n, d, k, dtype)
    return Case(label, (w, b, X, y, idx))


MINIBATCH_GRADIENT = Exercise(
    grade_id="test_minibatch_gradient",
    name="minibatch_gradient",
    reference=minibatch_gradient,
    cases=[_gradient_case(*spec, k) for k, spec in enumerate([
        ("batch of 4 of 12 examples, d=3", 12, 3, torch.tensor([3, 7, 1, 0]), _FLOAT64),
        ("a single example", 12, 3, torch.tensor([5]), _FLOAT64),
        ("batch of 5, d=1", 9, 1, torch.tensor([8, 2, 4, 6, 0]), _FLOAT64),
        ("the whole data set as one batch", 6, 2, torch.arange(6), _FLOAT64),
        ("float32, batch of 16 of 40, d=4", 40, 4,
         torch.randperm(40, generator=_generator(7))[:16], torch.float32)])],
    observe=_gradient_observe,
    show=lambda run: _flat(run.result),
    passed="minibatch_gradient: 5 cases match (2/|B|) X_B^T r_B and (2/|B|) sum r_B "
           "(float64 and float32, batches of 1 to all examples)",
    hidden=_gradient_hidden,
    rtol=1e-10, atol=1e-12,
    rules=[_gradient_contract],
    diagnose=_gradient_diagnose,
    mistakes=[
        Mistake("residual_sign_flipped",
                "the gradient points the wrong way: the residual is r = X_B w + b - y_B "
                "(prediction minus target), not y - prediction." + _SHOWN_GRADIENT,
                lambda w, b, X, y, idx: minibatch_gradient(-w, -b, X, -y, idx)),
        _gradient_mistake(
            "summed_over_batch",
            lambda run: f"your gradient is {_sizes(run)[0]}x too large (the batch size): "
                        "you summed over the batch instead of averaging. Divide by "
                        "len(idx) (or use .mean()), so the step size does not depend on "
                        "the batch size.",
            lambda size, n: size),
        _gradient_mistake("factor_2_missing", "your gradient is half the right one: you "
                          "forgot the factor 2 from d/dr r^2 = 2r.", lambda size, n: 0.5),
        _gradient_mistake("summed_and_factor_2_missing",
                          "you summed instead of averaging AND forgot the factor 2: the "
                          "gradient is (2/|B|) X_B^T r_B.", lambda size, n: 0.5 * size),
        _gradient_mistake(
            "divided_by_n",
            lambda run: f"you divided by n = {_sizes(run)[1]} (the whole data set) "
                        f"instead of the batch size |B| = {_sizes(run)[0]}.",
            lambda size, n: size / n),
        Mistake("ignored_idx",
                "this is the full-batch gradient: you ignored idx. Use only the rows "
                "X[idx] and y[idx]." + _SHOWN_GRADIENT,
                lambda w, b, X, y, idx: mse_gradient(w, b, X, y)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 3.3: sgd_epoch
# --------------------------------------------------------------------------

def _sgd_flow(fn: Any, case: Case) -> Outcome:
    """``epochs`` calls of ``fn(w, b, X, y, lr, batch_size, generator)``, each
    from the previous one's (w, b), with one generator seeded from the case;
    snapshots after each call: the returned w, b and the w, b passed in."""
    w, b, X, y, lr, batch_size = case.args
    seed, epochs = case.data
    gen, out, before = _generator(seed), Outcome(), _GET_RNG()
    try:
        for _ in range(epochs):
            w_in, b_in = w, b
            kept = [w_in.clone(), b_in.clone()]
            result = fn(w_in, b_in, X, y, lr, batch_size, gen)
            out.returns.append(result)
            w, b = _pair(result)
            out.snaps.append([snap(w), _scalar(b), snap(w_in), snap(b_in),
                              _EQUAL(w_in, kept[0]) and _EQUAL(b_in, kept[1])])
            out.states.append(gen.get_state())
            if type(w) is not _TENSOR or type(b) is not _TENSOR:
                break
    finally:
        out.global_changed = not _EQUAL(before, _GET_RNG())
        _SET_RNG(before)
    return out


SGD_FLOW = _sgd_flow


def _sgd_observe(run: Run) -> Any:
    out: Outcome = run.result
    seen: list[Any] = []
    for shots, state in zip(out.snaps, out.states):
        w, b, w_in, b_in, _ = shots
        seen += [w, _shape(w), b, _shape(b), w_in, b_in, state]
    X, y = run.args[2], run.args[3]
    return seen + [snap(X), snap(y), not out.global_changed]


def _sgd_pair(run: Run, epoch: int = 0) -> tuple[Any, Any]:
    w, b, *_ = run.result.snaps[epoch]
    return w, b


_CHANGED_INPUTS = (
    "`sgd_epoch` changed the tensors passed in (w -= ... or w.sub_ updates the caller's "
    "tensor in place).\n  Diagnosis: write w = w - lr * grad_w (a new tensor) so runs "
    "that start from the same w0 stay independent.")
_NOT_ADVANCED = ("shuffle once per epoch with minibatch_indices(n, batch_size, "
                 "generator), using that generator itself (not a copy), so the next "
                 "epoch gets a new order.")
_NEXT_EPOCH = ("the second epoch must continue from the first epoch's w, b with a new "
               "order drawn from the same generator.")
_SHOWN_PARAMS = "  (values shown: w then b)"


def _close_pair(a: Any, b: Any, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
    return all(type(x) is _TENSOR and x.shape == y.shape and bool(torch.allclose(
        x.double(), y.double(), rtol=rtol, atol=atol)) for x, y in zip(a, b))


def _sgd_contract(got: Run, expected: Run) -> str | None:
    out: Outcome = got.result
    X, y = got.case.args[2], got.case.args[3]
    for result, shots in zip(out.returns, out.snaps):
        problem = _pair_problem(result, "sgd_epoch", X.shape[1], "w, b")
        if problem:
            return problem
        if not (shots[4] and _EQUAL(got.args[2], X) and _EQUAL(got.args[3], y)):
            return _CHANGED_INPUTS
    if _is_two_epochs(got.case):
        for epoch in range(len(out.snaps)):
            mine, want = _sgd_pair(got, epoch), _sgd_pair(expected, epoch)
            if not _close_pair(mine, want):
                return (f"epoch {epoch + 1}: expected {fmt(_flat(want))}, got "
                        f"{fmt(_flat(mine))}.\n  Diagnosis: {_NEXT_EPOCH}")
        return None
    if out.global_changed:
        return f"the global random state changed.\n  Diagnosis: {GLOBAL_RNG_HINT}"
    return None


def _sgd_generator_used(got: Run, expected: Run) -> str | None:
    """The right result, but the generator did not advance by one permutation."""
    if _close_pair(_sgd_pair(got), _sgd_pair(expected)) and \
            not _EQUAL(got.result.states[0], expected.result.states[0]):
        return ("the result is right, but the generator passed in did not advance by "
                f"exactly one permutation.\n  Diagnosis: {_NOT_ADVANCED}")
    return None


_IGNORES_GENERATOR_SGD = ("your result does not depend on the generator passed in: "
                          "shuffle with minibatch_indices(len(y), batch_size, generator).")
_SGD_DEFAULT = ("for each batch idx of minibatch_indices(len(y), batch_size, "
                "generator): grad_w, grad_b = minibatch_gradient(w, b, X, y, idx); "
                "w = w - lr * grad_w; b = b - lr * grad_b. (Check that "
                "minibatch_indices and minibatch_gradient pass their checks.)")


def _sgd_try(fn: Any, case: Case) -> tuple[Any, Any] | None:
    """The (w, b) of ``fn``'s first epoch on ``case``, None if it raises."""
    try:
        return _sgd_pair(run_case(SGD_EPOCH, fn, case))
    except Exception:  # noqa: BLE001 - only a diagnosis
        return None


def _sgd_diagnose(got: Run, expected: Run) -> str:
    mine, want = _sgd_pair(got), _sgd_pair(expected)
    for mistake in SGD_EPOCH.mistakes:         # w, b alone (a mistake may shuffle otherwise)
        wrong = _sgd_try(mistake.impl, got.case)
        if wrong is not None and _close_pair(mine, wrong) and not _close_pair(wrong, want):
            return mistake.text(got)
    seed, _ = got.case.data
    if len(got.case.args[3]) > 1:
        again = _sgd_try(got.fn, Case(got.case.label, got.case.args, data=(seed + 12345, 1)))
        if again is not None and _close_pair(again, _sgd_pair(got), 1e-12, 1e-12):
            return _IGNORES_GENERATOR_SGD + _SHOWN_PARAMS
    return _SGD_DEFAULT + _SHOWN_PARAMS


def _run_steps(w: Any, b: Any, X: Any, y: Any, lr: float, batches: list[Any], *,
               full: bool = False, carry: bool = True, summed: bool = False,
               ) -> tuple[Any, Any]:
    """SGD steps over ``batches``, optionally with one of the classic mistakes.

    ``full``: full-batch gradient at every step; ``carry=False``: every step
    starts from the initial ``(w, b)``; ``summed``: gradients summed over the
    batch instead of averaged.
    """
    w0, b0 = w, b
    for idx in batches:
        at_w, at_b = (w, b) if carry else (w0, b0)
        grad_w, grad_b = (mse_gradient(at_w, at_b, X, y) if full else
                          minibatch_gradient(at_w, at_b, X, y, idx))
        factor = len(idx) if summed else 1
        w, b = at_w - lr * factor * grad_w, at_b - lr * factor * grad_b
    return w, b


def _sgd_mistake(name: str, text: str | Callable[[Run], str],
                 steps: Callable[..., tuple[Any, Any]]) -> Mistake:
    """A wrong epoch ``steps(w, b, X, y, lr, batches)``, shuffled by the generator."""
    def wrong(w: Any, b: Any, X: Any, y: Any, lr: float, batch_size: int,
              generator: Any) -> tuple[Any, Any]:
        return steps(w, b, X, y, lr, minibatch_indices(len(y), batch_size, generator))
    diagnosis = (lambda run: text(run) + _SHOWN_PARAMS) if callable(text) \
        else text + _SHOWN_PARAMS
    return Mistake(name, diagnosis, wrong)


def _steps_here(run: Run) -> int:
    return math.ceil(len(run.case.args[3]) / run.case.args[5])


def _sgd_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for label, n, d, lr, size, epochs in (
            ("random batches, two epochs", int(rng.integers(20, 60)), int(rng.integers(1, 5)),
             None, int(rng.integers(2, 10)), 2),
            ("batches of one", int(rng.integers(5, 25)), int(rng.integers(1, 4)), None, 1, 1),
            ("the full batch, three epochs", int(rng.integers(5, 25)),
             int(rng.integers(1, 5)), None, None, 3),
            ("a batch larger than the data", int(rng.integers(2, 12)),
             int(rng.integers(1, 4)), None, int(rng.integers(12, 30)), 1),
            ("lr = 0", int(rng.integers(10, 40)), int(rng.integers(1, 4)), 0.0,
             int(rng.integers(2, 8)), 1)):
        w, b, x, y = _problem(n, d, rng)
        size = n if size is None else size
        if lr is None:       # small enough for every step to contract: rounding stays small
            biggest = float((x ** 2).sum(dim=1).max()) + 1.0
            lr = float(rng.uniform(0.1, 0.9)) / (2 * biggest)
        yield Case(label, (w, b, x, y, lr, size), data=(int(rng.integers(2 ** 62)), epochs))


def _sgd_case(n: int, d: int, lr: float, size: int, seed: int) -> Case:
    X, y, w, b = _regression(n, d, seed)
    return Case(f"n={n}, d={d}, lr={lr}, batch_size={size}, seed={seed}",
                (w, b, X, y, lr, size), data=(seed, 1))


def _two_epochs_case() -> Case:
    X, y, w, b = _regression(10, 2, 5)
    return Case("two epochs with one generator, n=10, batch_size=3",
                (w, b, X, y, 0.1, 3), data=(5, 2))


SGD_EPOCH = Exercise(
    grade_id="test_sgd_epoch",
    name="sgd_epoch",
    reference=sgd_epoch,
    cases=[_sgd_case(*spec) for spec in [(10, 2, 0.1, 4, 0), (12, 3, 0.05, 3, 1),
                                         (8, 2, 0.2, 8, 2), (6, 1, 0.02, 1, 3),
                                         (30, 4, 0.05, 7, 4)]] + [_two_epochs_case()],
    observe=_sgd_observe,
    call=_sgd_flow,
    show=lambda run: _flat(_sgd_pair(run)),
    passed="sgd_epoch: 5 cases and two epochs in a row match one SGD step "
           "per shuffled mini-batch (w - lr * grad_w, b - lr * grad_b), "
           "generator used once per epoch, inputs and global RNG untouched",
    hidden=_sgd_hidden,
    rtol=1e-9, atol=1e-12,
    rules=[_sgd_contract],
    after=[_sgd_generator_used],
    diagnose=_sgd_diagnose,
    mistakes=[
        _sgd_mistake("one_full_batch_step",
                     lambda run: "you took ONE full-batch gradient step for the whole "
                                 "epoch; SGD takes one step per mini-batch "
                                 f"({_steps_here(run)} steps here), each with the "
                                 "gradient of that batch only.",
                     lambda w, b, X, y, lr, batches: _run_steps(
                         w, b, X, y, lr, [_ARANGE(len(y))])),
        _sgd_mistake("full_gradient_per_batch",
                     "you took one step per batch but each with the FULL gradient: pass "
                     "the batch's indices idx to minibatch_gradient.",
                     lambda w, b, X, y, lr, batches: _run_steps(
                         w, b, X, y, lr, batches, full=True)),
        Mistake("not_shuffled",
                "you went through the examples in order 0, 1, 2, ...: shuffle with "
                "minibatch_indices(len(y), batch_size, generator)." + _SHOWN_PARAMS,
                lambda w, b, X, y, lr, batch_size, generator: _run_steps(
                    w, b, X, y, lr, list(_ARANGE(len(y)).split(batch_size)))),
        _sgd_mistake("dropped_last_batch",
                     "you skipped the last, smaller batch: every example must be used "
                     "once per epoch.",
                     lambda w, b, X, y, lr, batches: _run_steps(
                         w, b, X, y, lr, batches[:-1] if len(batches[-1]) < len(batches[0])
                         else batches)),
        _sgd_mistake("parameters_not_carried",
                     "every step started again from the w, b passed in, so only the last "
                     "batch counts: update w and b in the loop (w = w - lr * grad_w) and "
                     "compute the next gradient at the new values.",
                     lambda w, b, X, y, lr, batches: _run_steps(
                         w, b, X, y, lr, batches, carry=False)),
        _sgd_mistake("summed_gradients",
                     "your steps are batch_size times too large: the batch gradient is a "
                     "mean over the batch, not a sum.",
                     lambda w, b, X, y, lr, batches: _run_steps(
                         w, b, X, y, lr, batches, summed=True)),
        _sgd_mistake("moved_uphill", "your steps went uphill: subtract lr * gradient.",
                     lambda w, b, X, y, lr, batches: _run_steps(w, b, X, y, -lr, batches)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Predict, then run: the lesson's experiments, re-run (plain torch and numpy)
# --------------------------------------------------------------------------

def _lesson_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The lesson's data set: make_regression(n=2000, d=5, noise=0.5, seed=0)."""
    X, y, _, _ = make_regression(n=2000, d=5, noise=0.5, seed=0)
    return X, y


def _noise_of_averages(K: int, epochs: int = 400, seed: int = 2) -> float:
    r"""The notebook's experiment: $\sqrt{\mathbb{E}\lVert \bar g_K - \nabla L\rVert^2}$
    for the mean $\bar g_K$ of K batch gradients (batches of 10 at w = 0, b = 0)
    from K different epochs: batch j of K consecutive epochs, for every j."""
    X, y = _lesson_data()
    n, size = len(y), 10
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # as the notebook runs (and many small ops are fast)
    try:
        G = 2 * (-y)[:, None] * _CAT([X, torch.ones(n, 1)], dim=1)   # per-example
        g = _generator(seed)
        E = torch.stack([G[_RANDPERM(n, generator=g)].view(n // size, size, -1).mean(1)
                         for _ in range(epochs)])                  # (epoch, batch, d + 1)
        m = epochs // K
        means = E[:m * K].reshape(m, K, n // size, -1).mean(1)
        return float(((means - G.mean(0)) ** 2).sum(-1).mean().sqrt())
    finally:
        torch.set_num_threads(threads)


def _noise_ratio() -> float:
    """How many times less noisy 32 independent batch gradients are than 8, averaged."""
    return round(_noise_of_averages(8) / _noise_of_averages(32), 4)


PREDICT_NOISE_RATIO = Question(
    grade_id="test_predict_noise_ratio",
    name="predict_noise_ratio",
    answer=_noise_ratio,
    rtol=0.2,
    unit="times smaller",
    why=("the K batch gradients of different epochs are independent, each with mean grad L, "
         "so the variances of their errors add: the average of K has variance c^2 / K and "
         "standard deviation c / sqrt(K). Four times more batches give sqrt(4) = 2 times "
         "less noise (and 4 times less variance)."),
)


#: The batch sizes of the lesson's comparison (lr = 0.02, 10 epochs, seed 0).
BATCH_SIZES = ("1", "10", "100", "2000")


def _best_batch_size(lr: float = 0.02, epochs: int = 10, seed: int = 0) -> str:
    """Run the notebook's four SGD runs (float64 numpy, torch's shuffling) and
    return the batch size with the lowest loss after the last epoch."""
    X, y = _lesson_data()
    n = len(y)
    A = np.hstack([X.double().numpy(), np.ones((n, 1))])
    t = y.double().numpy()
    final = {}
    for name in BATCH_SIZES:
        size, theta, g = int(name), np.zeros(A.shape[1]), _generator(seed)
        for _ in range(epochs):
            perm = _RANDPERM(n, generator=g).numpy()
            for start in range(0, n, size):
                rows = perm[start:start + size]
                r = A[rows] @ theta - t[rows]
                theta = theta - lr * (2 / len(rows)) * (r @ A[rows])
        final[name] = float(np.mean((A @ theta - t) ** 2))
    return min(final, key=final.__getitem__)


PREDICT_BEST_BATCH = Question(
    grade_id="test_predict_best_batch",
    name="predict_best_batch",
    answer=_best_batch_size,
    choices=BATCH_SIZES,
    why=("B = 2000 is exact but takes only 10 steps in all, far too few at lr = 0.02. "
         "B = 1 and B = 10 arrive within the first epoch, then bounce at their noise "
         "floors, proportional to lr / B. B = 100 takes 200 steps, enough to arrive, and "
         "its 20 small steps per epoch use every example once, so most of the batch noise "
         "of an epoch cancels: it ends hundreds of times lower than B = 10."),
)


# --------------------------------------------------------------------------
# Exercise 3.4: lr_schedule
# --------------------------------------------------------------------------

def _schedule_observe(run: Run) -> Any:
    return real(run.result, (float, np.float64))


def _schedule_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "lr_schedule"
    if out is None:
        return f"`{name}` returned None: did you forget `return`?"
    if isinstance(out, torch.Tensor):
        return f"`{name}` returned a tensor; return a plain Python float (float(...))."
    if type(out) not in (float, np.float64):
        return f"`{name}` must return a float, got {type(out).__name__}."
    return None


def _schedule_on_error(case: Case, exc: BaseException) -> str | None:
    if not isinstance(exc, ZeroDivisionError):
        return None
    if case.args[0] == 0:
        return ("lr0 / (decay * step) divides by zero at step 0; the schedule is "
                "lr0 / (1 + decay * step), which starts at lr0.")
    return ("with decay = 0 the learning rate must stay lr0: decay is a rate that "
            "multiplies the step, lr0 / (1 + decay * step); don't divide by it.")


def _schedule_diagnose(got: Run, expected: Run) -> str:
    if not math.isfinite(got.result):
        return ("the learning rate must stay finite: lr0 / (1 + decay * step) never "
                "divides by zero.")
    return "the schedule is lr0 / (1 + decay * step)."


def _schedule_hidden(rng: np.random.Generator) -> Iterator[Case]:
    def rate(low: float, high: float) -> float:
        return float(10 ** rng.uniform(low, high))
    lr0, decay = rate(-3.0, 0.5), rate(-3.0, 1.0)        # one schedule, step by step
    for step in range(int(rng.integers(5, 15))):
        yield Case("a random schedule", (step, lr0, decay))
    for _ in range(8):                                   # random steps of every size
        yield Case("a random step", (int(rng.integers(0, 10 ** int(rng.integers(1, 7)))),
                                     rate(-3.0, 0.5), rate(-4.0, 1.0)))
    yield Case("step 0", (0, rate(-3.0, 0.5), rate(-3.0, 1.0)))
    yield Case("decay 0", (int(rng.integers(0, 1000)), float(rng.uniform(0.001, 1.0)), 0.0))
    yield Case("a very large step", (int(rng.integers(10 ** 5, 10 ** 7)), rate(-3.0, 0.5),
                                     rate(-3.0, 0.0)))
    yield Case("a large decay", (int(rng.integers(1, 20)), rate(-3.0, 0.5), rate(0.5, 1.5)))


_EXPONENTIAL = ("that is an exponential decay; the lesson's schedule decays like 1/t: "
                "lr0 / (1 + decay * step). (An exponential schedule shrinks so fast "
                "that the learning rates have a finite sum, and SGD can stop short "
                "of the minimum.)")

LR_SCHEDULE = Exercise(
    grade_id="test_lr_schedule",
    name="lr_schedule",
    reference=lr_schedule,
    # decay = 0 and a step of 10 come early: a learner who divides by decay is
    # told so, and the exponential schedules are told apart from off-by-one ones.
    cases=[Case(f"step={t}, lr0={lr0}, decay={k}", (t, lr0, k))
           for t, lr0, k in [(0, 0.1, 0.5), (3, 0.05, 0.0), (10, 0.2, 0.1), (1, 0.1, 0.5),
                             (100, 1.0, 0.01), (7, 0.3, 2.0), (4, 0.08, 0.25)]],
    observe=_schedule_observe,
    passed="lr_schedule: 7 cases match lr0 / (1 + decay * step), starting at lr0 "
           "for step 0",
    hidden=_schedule_hidden,
    rtol=1e-12, atol=1e-15,
    rules=[_schedule_contract],
    on_error=_schedule_on_error,
    diagnose=_schedule_diagnose,
    mistakes=[
        Mistake("decayed_from_step_1",
                "off by one: at step 0 the learning rate must be lr0 itself; you decayed "
                "from step 1 (use step, not step + 1).",
                lambda t, lr0, k: lr0 / (1 + k * (t + 1))),
        Mistake("step_minus_one", "off by one: use 1 + decay * step, not "
                "1 + decay * (step - 1).", lambda t, lr0, k: lr0 / (1 + k * (t - 1))),
        Mistake("divided_by_decay", "decay is a rate that multiplies the step: "
                "1 + decay * step, not 1 + step / decay.",
                lambda t, lr0, k: lr0 if k == 0 else lr0 / (1 + t / k)),
        Mistake("exponential_decay", _EXPONENTIAL, lambda t, lr0, k: lr0 * math.exp(-k * t)),
        Mistake("geometric_decay", _EXPONENTIAL, lambda t, lr0, k: lr0 * (1 - k) ** t),
        Mistake("compound_decay", _EXPONENTIAL, lambda t, lr0, k: lr0 / (1 + k) ** t),
        Mistake("power_of_decay", _EXPONENTIAL, lambda t, lr0, k: lr0 * k ** t),
        Mistake("square_root_decay", "that is a 1/sqrt(t) schedule; this one is "
                "lr0 / (1 + decay * step), without the square root.",
                lambda t, lr0, k: lr0 / math.sqrt(1 + k * t)),
        Mistake("linear_decay", "that is a linear decay (it even turns negative); divide "
                "instead: lr0 / (1 + decay * step).", lambda t, lr0, k: lr0 * (1 - k * t)),
        Mistake("brackets", "mind the brackets: lr0 / (1 + decay * step), not "
                "lr0 / (1 + decay) * step.", lambda t, lr0, k: lr0 / (1 + k) * t),
    ],
    forbidden=FORBIDDEN,
)


EXERCISES = [MINIBATCH_INDICES, MINIBATCH_GRADIENT, PREDICT_NOISE_RATIO, SGD_EPOCH,
             PREDICT_BEST_BATCH, LR_SCHEDULE]
