"""course.sgd.sgd_update (one tensor) and sgd_update_foreach against torch."""

from __future__ import annotations

import itertools

import pytest
import torch

from course.sgd import sgd_update, sgd_update_foreach

OPTIONS = [
    dict(lr=lr, momentum=m, dampening=d, weight_decay=wd, nesterov=n, maximize=mx)
    for lr, m, d, wd, n, mx in itertools.product(
        [0.1, 0.013], [0, 0.9], [0, 0.25], [0, 0.01], [False, True], [False, True])
    if not (n and (m == 0 or d != 0))
]


def _ids(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items() if v not in (0, False))


def _grads(n_steps, shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=dtype) for _ in range(n_steps)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kwargs", OPTIONS, ids=_ids)
def test_sgd_update_matches_torch_bit_for_bit(kwargs, dtype):
    p0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ref = p0.clone().requires_grad_()
    opt = torch.optim.SGD([ref], **kwargs)
    ours, buf = p0.clone(), None
    for g in _grads(12, (5, 3), dtype):
        ref.grad = g.clone()
        opt.step()
        buf = sgd_update(ours, g, buf, **kwargs)
        assert torch.equal(ours, ref.detach())
    if kwargs["momentum"]:
        assert torch.equal(buf, opt.state[ref]["momentum_buffer"])
    else:
        assert buf is None


@pytest.mark.parametrize("kwargs", OPTIONS[::2], ids=_ids)
def test_foreach_equals_single_tensor(kwargs):
    shapes = [(3,), (2, 2), (), (0,)]
    dtypes = [torch.float32, torch.float64, torch.float32, torch.float32]
    params = [torch.ones(s, dtype=dt) for s, dt in zip(shapes, dtypes)]
    singles = [p.clone() for p in params]
    bufs, sbufs = [None] * 4, [None] * 4
    for step in range(5):
        grads = [torch.full(s, 0.3 * (step + 1) + i, dtype=dt)
                 for i, (s, dt) in enumerate(zip(shapes, dtypes))]
        sgd_update_foreach(params, [g.clone() for g in grads], bufs, **kwargs)
        for i in range(4):
            sbufs[i] = sgd_update(singles[i], grads[i], sbufs[i], **kwargs)
        assert all(torch.equal(a, b) for a, b in zip(params, singles))


def test_does_not_modify_grad_and_buffer_is_a_copy():
    p, g = torch.ones(3), torch.tensor([1.0, 2.0, 3.0])
    buf = sgd_update(p, g, None, lr=0.1, momentum=0.9, dampening=0.5)
    assert torch.equal(g, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(buf, g) and buf.data_ptr() != g.data_ptr()   # first step: b = g, undampened


def test_second_step_applies_dampening():
    p = torch.zeros(1)
    buf = sgd_update(p, torch.tensor([1.0]), None, lr=1.0, momentum=0.5, dampening=0.5)
    buf = sgd_update(p, torch.tensor([1.0]), buf, lr=1.0, momentum=0.5, dampening=0.5)
    assert buf.item() == pytest.approx(0.5 * 1.0 + 0.5 * 1.0)


def test_maximize_negates_gradient_not_lr():
    p = torch.tensor([2.0])
    sgd_update(p, torch.tensor([1.0]), None, lr=0.5, weight_decay=0.5, maximize=True)
    # g = -1 + 0.5 * 2 = 0: weight decay still pulls toward 0, ascent cancels it
    assert p.item() == 2.0


def test_tensor_lr_any_one_element_shape():
    for lr in (torch.tensor(0.1), torch.tensor([0.1]), torch.tensor([[0.1]])):
        p = torch.ones(2)
        sgd_update(p, torch.ones(2), None, lr=lr)
        assert torch.equal(p, torch.ones(2).add(torch.ones(2), alpha=-0.1))


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                    reason="fused multiply-add only on AVX2/AVX-512 CPUs")
def test_natural_formula_differs_from_torch_in_the_last_bit():
    """Why the course insists on add_(..., alpha=...): p - lr * g rounds twice."""
    gen = torch.Generator().manual_seed(0)
    p, g = torch.randn(10_000, generator=gen), torch.randn(10_000, generator=gen)
    exact = p.clone()
    sgd_update(exact, g, None, lr=0.1)
    natural = p - 0.1 * g
    diff = (exact != natural).sum().item()
    assert diff > 0
    assert torch.allclose(exact, natural, rtol=0, atol=1e-6)


BAD = {
    "param not tensor": (dict(param=[1.0]), TypeError, "param must be a torch.Tensor, got list"),
    "grad not tensor": (dict(grad=1.0), TypeError, "grad must be a torch.Tensor, got float"),
    "buffer not tensor": (dict(momentum_buffer="b"), TypeError, "momentum_buffer must be a torch.Tensor or None"),
    "shape mismatch": (dict(grad=torch.ones(4)), ValueError, r"grad has shape \(4,\) but param has shape \(3,\)"),
    "buffer shape": (dict(momentum_buffer=torch.ones(2)), ValueError, r"momentum_buffer has shape \(2,\)"),
    "negative lr": (dict(lr=-0.1), ValueError, "Invalid lr value: -0.1"),
    "nan lr": (dict(lr=float("nan")), ValueError, "lr is NaN"),
    "string lr": (dict(lr="0.1"), TypeError, "lr must be a number, got str"),
    "bool momentum": (dict(momentum=True), TypeError, "momentum must be a number, got bool"),
    "negative momentum": (dict(momentum=-0.9), ValueError, "Invalid momentum value"),
    "negative weight decay": (dict(weight_decay=-1), ValueError, "Invalid weight_decay value"),
    "tensor lr 2 elements": (dict(lr=torch.tensor([0.1, 0.2])), ValueError, "Tensor lr must be 1-element"),
    "nesterov no momentum": (dict(nesterov=True), ValueError, "Nesterov momentum requires"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_gets_clear_error(case):
    overrides, exc, pattern = BAD[case]
    args = dict(param=torch.ones(3), grad=torch.ones(3), momentum_buffer=None, lr=0.1)
    args.update(overrides)
    param, grad, buf = args.pop("param"), args.pop("grad"), args.pop("momentum_buffer")
    with pytest.raises(exc, match=pattern):
        sgd_update(param, grad, buf, **args)


def test_foreach_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        sgd_update_foreach([torch.ones(1)], [], [None], lr=0.1)
