"""Tests of course.timing: interleaved medians and ratios, op counts, profiler table."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

from course.optim import SGD
from course.timing import (
    Timings,
    compare_step_times,
    compare_times,
    count_ops,
    params_with_grads,
    plot_speedups,
    plot_step_times,
    profile_table,
    sweep_step_times,
    time_call,
    time_step,
)


def small_model():
    return [torch.nn.Linear(4, 4) for _ in range(3)]


def test_time_call_measures_seconds_per_call():
    t = time_call(lambda: time.sleep(0.002), n=3)
    assert 0.0015 < t < 0.05


def test_time_call_validates_arguments():
    with pytest.raises(TypeError, match="callable"):
        time_call(3)
    with pytest.raises(ValueError, match="n must be >= 1"):
        time_call(lambda: None, n=0)


def test_time_call_restores_gc_state():
    import gc
    assert gc.isenabled()
    time_call(lambda: None, 2)
    assert gc.isenabled()


def test_time_step_steps_n_times():
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = torch.optim.SGD([p], lr=0.5)
    assert time_step(opt, 4) > 0
    assert torch.equal(p.detach(), torch.full((3,), -2.0))
    with pytest.raises(TypeError, match="Optimizer"):
        time_step(object(), 2)


def test_compare_times_interleaves_and_rotates_order():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    t = compare_times(fns, repeats=3, inner=1, warmup=1)
    assert calls[:3] == ["a", "b", "c"]                       # warm-up
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert set(t.samples) == {"a", "b", "c"}
    assert all(len(v) == 3 for v in t.samples.values())
    assert t.baseline == "a"


def test_compare_times_validates():
    with pytest.raises(ValueError, match="empty"):
        compare_times({})
    with pytest.raises(ValueError, match="baseline"):
        compare_times({"a": lambda: None}, baseline="b")
    with pytest.raises(TypeError, match="callable"):
        compare_times({"a": 1})
    with pytest.raises(ValueError, match="repeats"):
        compare_times({"a": lambda: None}, repeats=0)


def test_timings_medians_ratios_and_table():
    t = Timings(samples={"fast": [1.0, 2.0, 9.0], "slow": [4.0, 4.0, 5.0]}, baseline="slow")
    assert t.medians == {"fast": 2.0, "slow": 4.0}
    assert t.ratios == {"fast": 0.5, "slow": 1.0}
    assert t.speedups == {"fast": 2.0, "slow": 1.0}
    table = t.table("title")
    assert table.splitlines()[0] == "title"
    assert "(vs slow)" in table
    assert "0.50" in table and "2000000.0us" in table


def test_compare_times_slower_function_has_larger_ratio():
    t = compare_times({"base": lambda: None, "sleepy": lambda: time.sleep(0.001)},
                      repeats=3, inner=2, warmup=0)
    assert t.ratios["base"] == 1.0
    assert t.ratios["sleepy"] > 10


def test_params_with_grads_is_reproducible_and_keeps_rng():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = params_with_grads(small_model)
    b = params_with_grads(small_model)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert len(a) == 6
    for p, q in zip(a, b):
        assert p is not q and torch.equal(p, q) and torch.equal(p.grad, q.grad)
        assert p.grad.abs().max() < 0.01
    c = params_with_grads(lambda: torch.nn.Linear(2, 2), seed=1)
    assert len(c) == 2 and not torch.equal(c[0], a[0][:2, :2])


def test_compare_step_times_gives_each_optimizer_its_own_params():
    built = []

    def factory(ps):
        built.append(ps)
        return torch.optim.SGD(ps, lr=0.1, momentum=0.9)

    t = compare_step_times({"a": factory, "b": factory},
                           lambda: params_with_grads(small_model), 2, inner=2, warmup=1)
    assert set(t.ratios) == {"a", "b"}
    assert built[0][0] is not built[1][0]
    assert torch.equal(built[0][0], built[1][0])          # same work on both
    assert all(len(v) == 2 for v in t.samples.values())


def test_compare_step_times_requires_grads():
    with pytest.raises(ValueError, match=r"\.grad"):
        compare_step_times({"a": lambda ps: torch.optim.SGD(ps)},
                           lambda: list(torch.nn.Linear(2, 2).parameters()))
    with pytest.raises(TypeError, match="params_factory"):
        compare_step_times({"a": lambda ps: torch.optim.SGD(ps)}, None)


def test_compare_step_times_course_sgd_against_torch():
    t = compare_step_times(
        {"course": lambda ps: SGD(ps, lr=0.01, momentum=0.9),
         "torch": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)},
        lambda: params_with_grads(small_model), repeats=3, inner=3, baseline="torch")
    assert t.ratios["torch"] == 1.0 and t.ratios["course"] > 0


@pytest.mark.parametrize("foreach, expected", [
    (False, Counter({"add_": 12, "mul_": 6})),
    (True, Counter({"_foreach_add_": 2, "_foreach_mul_": 1})),
])
def test_count_ops_of_a_momentum_step(foreach, expected):
    opt = torch.optim.SGD(params_with_grads(small_model), lr=0.1, momentum=0.9,
                          foreach=foreach)
    first = count_ops(opt.step)
    assert first["clone"] == 6 and first["detach"] == 6
    assert count_ops(opt.step) == expected


def test_count_ops_can_leave_out_views():
    opt = torch.optim.SGD(params_with_grads(small_model), lr=0.1, momentum=0.9)
    counts = count_ops(opt.step, include_views=False)
    assert "detach" not in counts and counts["clone"] == 6


def test_count_ops_counts_plain_tensor_code():
    x = torch.ones(3)
    assert count_ops(lambda: x.mul(2).add_(1)) == Counter({"mul": 1, "add_": 1})


def test_profile_table_lists_ops_and_is_quiet(capfd):
    opt = torch.optim.SGD(params_with_grads(small_model), lr=0.1)
    table = profile_table(opt.step, row_limit=5)
    assert "aten::add_" in table and "# of Calls" in table
    err = capfd.readouterr().err
    assert "profiler_start" not in err


def test_sweep_step_times_returns_one_median_per_x():
    def params_for(n):
        return params_with_grads(lambda: torch.nn.Linear(n, 1, bias=False))
    out = sweep_step_times(
        {"loop": lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=False),
         "foreach": lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True)},
        params_for, [4, 64], repeats=2, max_inner=3)
    assert set(out) == {"loop", "foreach"}
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in out.values())


def test_plot_step_times_and_speedups():
    import matplotlib
    matplotlib.use("Agg", force=True)
    ax = plot_step_times([1, 10], {"a": [1e-6, 2e-6], "b": [3e-6, 4e-6]}, xlabel="n",
                         title="t")
    assert ax.get_xscale() == "log" and len(ax.lines) == 2
    assert ax.lines[0].get_ydata()[1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="has 1 values for 2 xs"):
        plot_step_times([1, 10], {"a": [1e-6]})
    t = Timings(samples={"base": [2.0], "fast": [1.0]}, baseline="base")
    ax = plot_speedups({"small": t, "large": t}, title="s")
    assert len(ax.patches) == 4
    assert ax.get_ylabel() == "speed-up vs base"
    assert [x.get_text() for x in ax.get_xticklabels()] == ["small", "large"]
    with pytest.raises(ValueError, match="empty"):
        plot_speedups({})


def test_slope_is_robust_to_one_disturbed_point():
    from course.timing import slope

    xs = [1, 2, 4, 8, 16, 32]
    ys = [10 + 3 * x for x in xs]
    assert slope(xs, ys) == 3
    ys[-1] += 500                      # one timing hit by another process
    assert abs(slope(xs, ys) - 3) < 1
    with pytest.raises(ValueError):
        slope([1, 1], [2, 3])
    with pytest.raises(ValueError):
        slope([1, 2], [2])
