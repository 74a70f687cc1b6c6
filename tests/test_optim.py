"""course.optim.SGD against torch.optim.SGD: trajectories, state, errors, interop.

Every comparison uses ``torch.equal``: the class must match torch bit for bit.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import pickle
import warnings

import pytest
import torch

from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                   register_optimizer_step_pre_hook)

from course.optim import SGD
from tests.conftest import batch, mlp

# Every valid combination of the update options.
GRID = [
    dict(lr=lr, momentum=m, dampening=d, weight_decay=wd, nesterov=n, maximize=mx)
    for lr, m, d, wd, n, mx in itertools.product(
        [0.01, 0.3], [0, 0.9], [0, 0.3], [0, 0.05], [False, True], [False, True])
    if not (n and (m == 0 or d != 0))
]


def _grid_id(kw: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items() if v not in (0, False))


def train(cls, kwargs, *, steps=8, dtype=torch.float32, none_grad_at=3, foreach=None):
    """Train the seed MLP with MSE; drop one grad at one step; return all params per step."""
    model = mlp(0, dtype)
    X, y = batch(1, dtype)
    opt = cls(model.parameters(), foreach=foreach, **copy.deepcopy(kwargs))
    out = []
    for t in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        if t == none_grad_at:
            model[2].bias.grad = None
        opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out, opt


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    """torch.equal, except that NaNs in the same places (diverged runs) also count as equal."""
    return torch.equal(x, y) or (x.shape == y.shape and x.dtype == y.dtype
                                 and torch.equal(x.isnan(), y.isnan())
                                 and torch.equal(x.nan_to_num(), y.nan_to_num()))


def assert_same(a, b):
    for step, (pa, pb) in enumerate(zip(a, b, strict=True)):
        for i, (x, y) in enumerate(zip(pa, pb, strict=True)):
            assert same_bits(x, y), f"step {step}, param {i}: max diff {(x - y).abs().max()}"


def assert_same_state(o1, o2):
    s1, s2 = o1.state_dict(), o2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"].keys() == s2["state"].keys()
    for k in s1["state"]:
        assert s1["state"][k].keys() == s2["state"][k].keys() == {"momentum_buffer"}
        assert same_bits(s1["state"][k]["momentum_buffer"], s2["state"][k]["momentum_buffer"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("foreach", [None, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("kwargs", GRID, ids=_grid_id)
def test_mlp_trajectory_bit_exact(kwargs, foreach, dtype):
    ref, topt = train(torch.optim.SGD, kwargs, dtype=dtype, foreach=foreach)
    got, copt = train(SGD, kwargs, dtype=dtype, foreach=foreach)
    assert_same(ref, got)
    assert_same_state(topt, copt)


def _raw(cls, kwargs, dtype, steps=10, foreach=None):
    """Raw tensors of several shapes (0-d, empty, 2-D) with fixed gradients per step."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(), (0,), (7,), (3, 4)]
    params = [torch.randn(s, generator=gen, dtype=dtype, requires_grad=True) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(steps)]
    opt = cls(params, foreach=foreach, **copy.deepcopy(kwargs))
    out = []
    for t in range(steps):
        for p, g in zip(params, grads[t]):
            p.grad = None if (t == 2 and p.dim() == 2) else g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("foreach", [None, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("kwargs", GRID[::3], ids=_grid_id)
def test_raw_tensors_bit_exact(kwargs, foreach, dtype):
    assert_same(_raw(torch.optim.SGD, kwargs, dtype, foreach=foreach),
                _raw(SGD, kwargs, dtype, foreach=foreach))


@pytest.mark.parametrize("lr", [torch.tensor(0.05), torch.tensor([0.05]), torch.tensor([[0.05]])],
                         ids=["0d", "1d", "2d"])
@pytest.mark.parametrize("foreach", [None, True], ids=["loop", "foreach"])
def test_tensor_lr(lr, foreach):
    kw = dict(lr=lr, momentum=0.9, weight_decay=0.01)
    ref, _ = train(torch.optim.SGD, kw, foreach=foreach)
    got, _ = train(SGD, kw, foreach=foreach)
    assert_same(ref, got)


@pytest.mark.parametrize("kwargs", [dict(lr=0.1, momentum=0.9), dict(lr=0.1),
                                    dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1),
                                    dict(lr=0.05, momentum=0.5, dampening=0.2, maximize=True)])
def test_fused_matches_torch_fused(kwargs):
    ref, _ = train(torch.optim.SGD, dict(kwargs, fused=True))
    got, _ = train(SGD, dict(kwargs, fused=True))
    assert_same(ref, got)


def test_param_groups_with_different_settings():
    def run(cls):
        model = mlp(0)
        X, y = batch()
        opt = cls([{"params": model[0].parameters(), "momentum": 0.9, "nesterov": True},
                   {"params": model[2].parameters(), "lr": 0.2, "weight_decay": 0.1,
                    "dampening": 0.5, "momentum": 0.5}], lr=0.05)
        out = []
        for _ in range(6):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), y).backward()
            opt.step()
            out.append([p.detach().clone() for p in model.parameters()])
        return out
    assert_same(run(torch.optim.SGD), run(SGD))


def test_first_step_is_per_parameter():
    """A parameter whose first gradient arrives late gets an undampened buffer then."""
    def run(cls):
        a = torch.ones(3, requires_grad=True)
        b = torch.ones(3, requires_grad=True)
        opt = cls([a, b], lr=0.1, momentum=0.9, dampening=0.5)
        for t in range(5):
            a.grad = torch.full((3,), 1.0 + t)
            b.grad = None if t < 3 else torch.full((3,), 2.0 + t)
            opt.step()
        return [a.detach().clone(), b.detach().clone(),
                opt.state[b]["momentum_buffer"].clone()]
    r, c = run(torch.optim.SGD), run(SGD)
    assert all(torch.equal(x, y) for x, y in zip(r, c))


def test_state_layout():
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = SGD([p, q], lr=0.1, momentum=0.9)
    p.grad = torch.ones(2)
    opt.step()
    assert list(opt.state.keys()) == [p]
    assert opt.state[p].keys() == {"momentum_buffer"}
    assert opt.state[p]["momentum_buffer"] is not p.grad
    opt0 = SGD([p], lr=0.1)
    opt0.step()
    assert len(opt0.state) == 0


def test_step_does_not_modify_grad_and_buffer_does_not_alias():
    p = torch.ones(3, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 3.0])
    p.grad = g.clone()
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    opt.step()
    assert torch.equal(p.grad, g)
    p.grad.mul_(10)
    assert torch.equal(opt.state[p]["momentum_buffer"], -g + 0.1 * torch.ones(3))


def test_zero_grad_is_not_skipped_but_none_is():
    def run(cls, grad):
        p = torch.ones(3, requires_grad=True)
        opt = cls([p], lr=0.1, momentum=0.9, weight_decay=0.5)
        p.grad = grad
        opt.step()
        return p.detach().clone(), len(opt.state)
    for grad in (None, torch.zeros(3)):
        (rp, rs), (cp, cs) = run(torch.optim.SGD, grad), run(SGD, grad)
        assert torch.equal(rp, cp) and rs == cs


def test_closure_called_once_with_grad_enabled_and_value_returned():
    model = mlp()
    X, y = batch()
    calls = []
    opt = SGD(model.parameters(), lr=0.1)

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss
    with torch.no_grad():
        loss = opt.step(closure)
    assert calls == [True]
    assert isinstance(loss, torch.Tensor)
    assert opt.step() is None
    sentinel = object()
    assert opt.step(lambda: sentinel) is sentinel


def test_step_runs_without_grad_and_leaves_leaves():
    model = mlp()
    X, y = batch()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.mse_loss(model(X), y).backward()
    opt.step()
    for p in model.parameters():
        assert p.is_leaf and p.grad_fn is None
        assert not opt.state[p]["momentum_buffer"].requires_grad


def test_hyperparameters_are_read_every_step():
    def run(cls):
        model = mlp()
        X, y = batch()
        opt = cls(model.parameters(), lr=0.1, momentum=0.9)
        out = []
        for t in range(6):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), y).backward()
            if t == 2:
                opt.param_groups[0].update(lr=0.02, momentum=0.5, weight_decay=0.1,
                                           dampening=0.1, maximize=True)
            opt.step()
            out.append([p.detach().clone() for p in model.parameters()])
        return out
    assert_same(run(torch.optim.SGD), run(SGD))


SCHEDULERS = [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.5, total_iters=4),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10),
]


@pytest.mark.parametrize("make_sched", SCHEDULERS, ids=["step", "exp", "linear", "cosine", "onecycle"])
def test_lr_schedulers(make_sched):
    def run(cls):
        model = mlp()
        X, y = batch()
        opt = cls(model.parameters(), lr=0.05, momentum=0.9)
        sched = make_sched(opt)
        out = []
        for _ in range(8):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), y).backward()
            opt.step()
            sched.step()
            out.append([p.detach().clone() for p in model.parameters()] + [torch.tensor(opt.param_groups[0]["lr"])])
        return out
    assert_same(run(torch.optim.SGD), run(SGD))


def test_reduce_lr_on_plateau_and_tensor_lr_scheduler():
    opt = SGD([torch.zeros(1, requires_grad=True)], lr=torch.tensor(0.1))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert opt.param_groups[0]["lr"].item() == pytest.approx(0.05)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                                         patience=0)
    for _ in range(3):
        plateau.step(1.0)
    assert plateau.optimizer.param_groups[0]["lr"] < 1.0


@pytest.mark.parametrize("direction", ["torch->course", "course->torch"])
def test_state_dict_transfer_then_continue(direction):
    src_cls, dst_cls = (torch.optim.SGD, SGD) if direction == "torch->course" else (SGD, torch.optim.SGD)
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    X, y = batch()

    def steps(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), y).backward()
            opt.step()

    ref_model = mlp()
    ref_opt = torch.optim.SGD(ref_model.parameters(), **kw)
    steps(ref_model, ref_opt, 8)

    model = mlp()
    opt = src_cls(model.parameters(), **kw)
    steps(model, opt, 4)
    saved = copy.deepcopy(opt.state_dict())
    opt2 = dst_cls(model.parameters(), lr=1.0)          # hyperparameters come from the state_dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == 0.05
    steps(model, opt2, 4)
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_state_dict_format_matches_torch():
    def sd(cls):
        model = mlp()
        opt = cls([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.2}],
                  lr=0.1, momentum=0.9)
        X, y = batch()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        return opt.state_dict()
    a, b = sd(torch.optim.SGD), sd(SGD)
    assert a["param_groups"] == b["param_groups"]
    assert list(a["state"]) == list(b["state"]) == [0, 1, 2, 3]


def test_old_state_dict_without_new_flags_loads():
    p = torch.zeros(2, requires_grad=True)
    sd = torch.optim.SGD([p], lr=0.1, momentum=0.9).state_dict()
    for key in ("nesterov", "maximize", "foreach", "differentiable", "fused"):
        del sd["param_groups"][0][key]
    opt = SGD([p], lr=0.5)
    opt.load_state_dict(sd)
    g = opt.param_groups[0]
    assert (g["nesterov"], g["maximize"], g["foreach"], g["differentiable"], g["fused"]) == \
        (False, False, None, False, False)


def test_state_dict_torch_save_weights_only(tmp_path):
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = batch()
    torch.nn.functional.mse_loss(model(X), y).backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    loaded = torch.load(tmp_path / "opt.pt", weights_only=True)
    opt2 = SGD(model.parameters())
    opt2.load_state_dict(loaded)
    assert_same_state(opt, opt2)


def test_named_parameters():
    model = mlp()
    opt, ref = SGD(model.named_parameters(), lr=0.1), torch.optim.SGD(model.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ref.param_groups[0]["param_names"]
    assert opt.state_dict()["param_groups"] == ref.state_dict()["param_groups"]


def test_add_param_group_and_zero_grad():
    a, b = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.full((3,), 0.5))
    g = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is g and torch.equal(g, torch.zeros(2))
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_deepcopy_and_pickle():
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    X, y = batch()
    torch.nn.functional.mse_loss(model(X), y).backward()
    opt.step()
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.defaults == opt.defaults
    assert_same_state(opt, opt2)
    assert set(opt2.state) == set(model2.parameters())
    opt3 = pickle.loads(pickle.dumps(opt))
    assert isinstance(opt3, SGD) and opt3.param_groups[0]["nesterov"] is True
    assert "SGD (" in repr(opt) and "momentum: 0.9" in repr(opt)


def test_step_hooks_run_in_order():
    order = []
    opt = SGD([torch.ones(1, requires_grad=True)], lr=0.1)
    h1 = register_optimizer_step_pre_hook(lambda *a: order.append("global-pre"))
    h2 = register_optimizer_step_post_hook(lambda *a: order.append("global-post"))
    try:
        opt.register_step_pre_hook(lambda *a: order.append("pre"))
        opt.register_step_post_hook(lambda *a: order.append("post"))
        opt.step()
    finally:
        h1.remove()
        h2.remove()
    assert order == ["global-pre", "pre", "post", "global-post"]


def test_signature_and_defaults_match_torch():
    ours, theirs = inspect.signature(SGD.__init__), inspect.signature(torch.optim.SGD.__init__)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
    p = [torch.zeros(1, requires_grad=True)]
    assert SGD(p).defaults == torch.optim.SGD(p).defaults
    with pytest.raises(TypeError, match="positional arguments but 8 were given"):
        SGD(p, 0.1, 0.9, 0, 0, False, False)


def _err(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return type(exc), str(exc)
    return None


P = torch.zeros(2, requires_grad=True)
ERROR_CASES = {
    "tensor lr 2 elements": lambda c: c([P], lr=torch.tensor([0.1, 0.2])),
    "negative lr": lambda c: c([P], lr=-0.1),
    "negative tensor lr": lambda c: c([P], lr=torch.tensor(-0.5)),
    "negative momentum": lambda c: c([P], momentum=-0.5),
    "negative weight decay": lambda c: c([P], weight_decay=-1e-3),
    "nesterov no momentum": lambda c: c([P], nesterov=True),
    "nesterov dampening": lambda c: c([P], momentum=0.9, dampening=0.1, nesterov=True),
    "lr before params": lambda c: c(P, lr=-1),
    "bare tensor": lambda c: c(P),
    "empty": lambda c: c([]),
    "non tensor": lambda c: c([1.0]),
    "non leaf": lambda c: c([P * 2]),
    "set group": lambda c: c([{"params": {P}}]),
    "two groups": lambda c: c([{"params": [P]}, {"params": [P]}]),
    "duplicate warning": lambda c: c([P, P]),
    "fused differentiable": lambda c: c([P], fused=True, differentiable=True),
    "fused foreach": lambda c: c([P], fused=True, foreach=True),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_validation_errors_match_torch(case):
    expected = _err(lambda: ERROR_CASES[case](torch.optim.SGD))
    assert expected is not None
    assert _err(lambda: ERROR_CASES[case](SGD)) == expected


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(momentum=1.5), dict(dampening=-0.5),
                                    dict(dampening=2.0), dict(lr=float("nan")),
                                    dict(momentum=float("nan")), dict(lr=torch.tensor([0.01])),
                                    dict(lr=1, momentum=1)])
def test_accepted_without_complaint(kwargs):
    SGD([torch.zeros(1, requires_grad=True)], **kwargs)
    SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": -0.1, "nesterov": True}])


def test_sparse_gradients():
    def run(cls, **kw):
        emb = torch.nn.Embedding(10, 3, sparse=True)
        torch.nn.init.constant_(emb.weight, 1.0)
        opt = cls(emb.parameters(), lr=0.1, **kw)
        for t in range(3):
            opt.zero_grad()
            emb(torch.tensor([t, t + 1, t])).pow(2).sum().backward()
            opt.step()
        return emb.weight.detach().clone()
    for kw in (dict(), dict(momentum=0.9, dampening=0.1), dict(momentum=0.9, nesterov=True),
               dict(maximize=True, momentum=0.5), dict(foreach=True, momentum=0.9)):
        assert torch.equal(run(torch.optim.SGD, **kw), run(SGD, **kw))
    for cls in (torch.optim.SGD, SGD):
        with pytest.raises(RuntimeError, match="add\\(sparse, dense\\) is not supported"):
            run(cls, weight_decay=0.1)


def test_complex_params():
    def run(cls):
        gen = torch.Generator().manual_seed(0)
        p = torch.randn(4, dtype=torch.complex64, generator=gen, requires_grad=True)
        opt = cls([p], lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)
        for _ in range(4):
            p.grad = torch.randn(4, dtype=torch.complex64, generator=gen)
            opt.step()
        return p.detach().clone()
    assert torch.equal(run(torch.optim.SGD), run(SGD))


def test_foreach_nesterov_updates_grads_like_torch():
    """Torch's foreach path adds the buffer into p.grad in place under nesterov; so do we."""
    def run(cls):
        p = torch.ones(3, requires_grad=True)
        opt = cls([p], lr=0.1, momentum=0.9, nesterov=True, foreach=True)
        p.grad = torch.tensor([1.0, 2.0, 3.0])
        for _ in range(4):
            opt.step()
        return p.detach().clone(), p.grad.clone()
    (rp, rg), (cp, cg) = run(torch.optim.SGD), run(SGD)
    assert torch.equal(rp, cp) and torch.equal(rg, cg)


def test_differentiable_step():
    def run(cls):
        w = torch.tensor([1.0, 2.0], requires_grad=True)
        lr = torch.tensor(0.1, requires_grad=True)
        p = w.clone()                                       # non-leaf: allowed when differentiable
        opt = cls([p], lr=lr, momentum=0.9, differentiable=True)
        p.grad = torch.tensor([0.5, -1.0])
        opt.step()
        p.sum().backward()
        return p.detach(), lr.grad.clone(), w.grad.clone()
    for a, b in zip(run(torch.optim.SGD), run(SGD)):
        assert torch.equal(a, b)


def test_requires_grad_false_with_manual_grad_is_updated():
    p = torch.ones(2)
    p.grad = torch.ones(2)
    SGD([p], lr=0.5).step()
    assert torch.equal(p, torch.full((2,), 0.5))


def test_does_not_use_torch_sgd(monkeypatch):
    """With torch's SGD class and functions sabotaged, course.optim.SGD still matches."""
    expected, _ = train(torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True))

    def boom(*args, **kwargs):
        raise AssertionError("course.optim.SGD must not call torch's SGD implementation")
    import torch.optim.sgd as torch_sgd
    for name in ("sgd", "_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd"):
        monkeypatch.setattr(torch_sgd, name, boom)
    monkeypatch.setattr(torch.optim.SGD, "step", boom)
    monkeypatch.setattr(torch.optim.SGD, "__init__", boom)
    got, _ = train(SGD, dict(lr=0.1, momentum=0.9, nesterov=True))
    assert_same(expected, got)
    got, _ = train(SGD, dict(lr=0.1, momentum=0.9, nesterov=True), foreach=True)
    assert_same(expected, got)


def _fused_attempt(cls, params):
    """Run one fused step; (exception type, message) and the number of state entries."""
    opt = cls(params, lr=0.1, momentum=0.9, fused=True)
    try:
        opt.step()
        outcome = None
    except Exception as exc:  # noqa: BLE001 - compared with torch's
        outcome = (type(exc), str(exc))
    return outcome, len(opt.state)


@pytest.mark.parametrize("first_ok", [True, False])
def test_fused_checks_the_first_parameter_once_as_torch(first_ok):
    """torch checks only the first parameter with a gradient, once per optimizer,
    before any state is made; a later unsupported parameter reaches the kernel."""
    def params():
        good = torch.nn.Parameter(torch.ones(3))
        bad = torch.nn.Parameter(torch.ones(3, dtype=torch.float64).to(torch.complex64),
                                 requires_grad=True)
        good.grad, bad.grad = torch.ones(3), torch.ones(3, dtype=torch.complex64)
        return [good, bad] if first_ok else [bad, good]
    assert _fused_attempt(SGD, params()) == _fused_attempt(torch.optim.SGD, params())
