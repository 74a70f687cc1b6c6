"""Tests for course.plotting: they inspect the artists each helper draws
(lines and their data, labels, scales, contours), headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course.functions import make_quadratic, quadratic, rosenbrock  # noqa: E402
from course.gd import gradient_descent  # noqa: E402
from course.plotting import (  # noqa: E402
    compare_optimizers,
    plot_loss,
    plot_lr_sweep,
    plot_path_1d,
    plot_paths_2d,
)


@pytest.fixture(autouse=True)
def close_figures(monkeypatch):
    """Close every figure after each test; fail if a helper calls plt.show."""
    def no_show(*args, **kwargs):
        raise AssertionError("plotting helpers must not call plt.show()")

    monkeypatch.setattr(plt, "show", no_show)
    yield
    plt.close("all")


def legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


# ---------------------------------------------------------------- plot_loss


def test_plot_loss_one_curve():
    """Check one line, x = step, y = the losses, log scale, labelled axes."""
    losses = [4.0, 2.0, 1.0, 0.5]
    ax = plot_loss(losses)
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1, 2, 3])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), losses)
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert ax.get_title() == "Loss"
    assert ax.get_legend() is None  # nothing labelled


def test_plot_loss_dict_of_curves_gets_a_legend():
    """Check a dict gives one line per entry, labelled in the legend."""
    curves = {"lr=0.1": np.array([1.0, 0.5]), "lr=0.3": torch.tensor([1.0, 0.1,
                                                                      0.01])}
    ax = plot_loss(curves, title="Two runs")
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 0.1, 0.01])
    assert legend_texts(ax) == ["lr=0.1", "lr=0.3"]
    assert ax.get_title() == "Two runs"


def test_plot_loss_list_of_curves_with_labels():
    """Check a list of curves with one label each."""
    ax = plot_loss([[3.0, 2.0], [3.0, 1.0, 0.5]], labels=["a", "b"])
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert legend_texts(ax) == ["a", "b"]
    ax = plot_loss([3.0, 2.0], labels="only")
    assert legend_texts(ax) == ["only"]


def test_plot_loss_draws_on_a_given_axes():
    """Check that ax= is used and returned."""
    fig, ax = plt.subplots()
    assert plot_loss([1.0, 0.5], ax=ax) is ax
    assert len(fig.axes) == 1


def test_plot_loss_nonpositive_values_fall_back_to_linear():
    """Check that a zero loss gives a linear axis, and log=False is honoured."""
    assert plot_loss([9.0, 0.0, 0.0]).get_yscale() == "linear"
    assert plot_loss([9.0, 1.0], log=False).get_yscale() == "linear"


def test_plot_loss_masks_non_finite_values():
    """Check that inf/nan of a divergent run become gaps (nan) in the line."""
    ax = plot_loss([1.0, 10.0, np.inf, np.nan])
    y = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(y[:2], [1.0, 10.0])
    assert np.all(np.isnan(y[2:]))
    assert ax.get_yscale() == "log"


# ------------------------------------------------------- compare_optimizers


def test_compare_optimizers_keeps_identical_curves_visible():
    """Check one line per optimizer, distinct styles and widths, log scale."""
    h = [1.0, 0.5, 0.25]
    ax = compare_optimizers({"course.SGD": h, "torch.optim.SGD": h, "other": h})
    assert len(ax.lines) == 3
    for line in ax.lines:
        np.testing.assert_array_equal(line.get_ydata(), h)
    styles = [line.get_linestyle() for line in ax.lines]
    assert len(set(styles)) == 3 and styles[0] == "-"
    widths = [line.get_linewidth() for line in ax.lines]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    assert legend_texts(ax) == ["course.SGD", "torch.optim.SGD", "other"]
    assert ax.get_yscale() == "log"


# ------------------------------------------------------------- plot_path_1d


def test_plot_path_1d_draws_curve_iterates_start_and_end():
    """Check the curve of f, the iterates on it, and start/end markers."""
    history = gradient_descent(lambda w: 2 * (w - 3), 0.0, 0.3, 6)
    ax = plot_path_1d(quadratic, history, title="GD on (w-3)^2")
    assert [line.get_label() for line in ax.lines] == ["f(w)", "iterates",
                                                       "start", "end"]
    curve, path, start, end = ax.lines
    np.testing.assert_allclose(curve.get_ydata(), (curve.get_xdata() - 3) ** 2)
    np.testing.assert_array_equal(path.get_xdata(), history)
    np.testing.assert_allclose(path.get_ydata(), (history - 3) ** 2)
    assert start.get_xdata()[0] == history[0] and end.get_xdata()[0] == history[-1]
    assert curve.get_xdata().min() < history.min()
    assert curve.get_xdata().max() > history.max()
    assert ax.get_title() == "GD on (w-3)^2"
    assert "iterates" in legend_texts(ax)


def test_plot_path_1d_with_xlim_and_divergent_history():
    """Check xlim sets the curve range and inf iterates are left out."""
    ax = plot_path_1d(quadratic, [0.0, 6.0, np.inf], xlim=(-1, 7))
    curve = ax.lines[0]
    assert curve.get_xdata()[0] == -1 and curve.get_xdata()[-1] == 7
    assert np.isnan(ax.lines[1].get_ydata()[-1])


# ------------------------------------------------------------ plot_paths_2d


def test_plot_paths_2d_contours_and_labelled_paths():
    """Check contours, one line per path with its data, legend, star."""
    q = make_quadratic(2, 10.0)
    paths = {
        "lr=0.05": gradient_descent(q.grad, [1.5, 1.5], 0.05, 10),
        "lr=0.15": gradient_descent(q.grad, [1.5, 1.5], 0.15, 10),
    }
    ax = plot_paths_2d(q, paths, minimum=q.minimizer, title="Two learning rates")
    assert len(ax.collections) > 0  # the contour set
    assert len(ax.lines) == 3
    for line, path in zip(ax.lines, paths.values()):
        np.testing.assert_array_equal(line.get_xdata(), path[:, 0])
        np.testing.assert_array_equal(line.get_ydata(), path[:, 1])
    assert legend_texts(ax) == ["lr=0.05", "lr=0.15", "minimum"]
    assert ax.lines[2].get_marker() == "*"
    assert ax.get_xlim() == (-2, 2) and ax.get_ylim() == (-2, 2)
    assert ax.get_title() == "Two learning rates"


def test_plot_paths_2d_single_path_without_legend():
    """Check a bare (T, 2) array is one unlabelled path, no legend."""
    path = np.array([[1.0, 1.0], [0.5, 0.2], [0.0, 0.0]])
    ax = plot_paths_2d(make_quadratic(), path)
    assert len(ax.lines) == 1 and ax.get_legend() is None
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), path[:, 0])


def test_plot_paths_2d_rosenbrock_with_log_levels():
    """Check log-spaced levels on Rosenbrock over a custom box."""
    ax = plot_paths_2d(rosenbrock, np.array([[-1.5, 2.0], [1.0, 1.0]]),
                       xlim=(-2, 2), ylim=(-1, 3), levels=12, log_levels=True)
    levels = ax.collections[0].levels
    assert len(levels) == 12
    np.testing.assert_allclose(levels[1:] / levels[:-1], levels[1] / levels[0])
    assert ax.get_ylim() == (-1, 3)


def test_plot_paths_2d_with_a_one_point_at_a_time_function():
    """Check that f written for a single (2,) point still gets contours."""
    ax = plot_paths_2d(lambda w: w[0] ** 2 + 2 * w[1] ** 2,
                       np.array([[1.0, 1.0], [0.0, 0.0]]), levels=5)
    zz = ax.collections[0]
    assert len(zz.levels) > 1
    assert zz.levels.max() <= 12.0 + 1e-9  # max of x^2 + 2 y^2 on the box


# ------------------------------------------------------------ plot_lr_sweep


def test_plot_lr_sweep_log_log_with_best_marked():
    """Check the line data, log-log axes and a star at the best lr."""
    lrs = [0.01, 0.1, 0.5, 1.0, 1.5]
    losses = [2.0, 0.1, 1e-6, 9.0, np.inf]
    ax = plot_lr_sweep(lrs, losses)
    line, star = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), lrs)
    np.testing.assert_array_equal(line.get_ydata()[:4], losses[:4])
    assert np.isnan(line.get_ydata()[4])
    assert star.get_xdata()[0] == 0.5 and star.get_ydata()[0] == 1e-6
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert legend_texts(ax) == ["final loss", "best lr = 0.5"]


def test_plot_lr_sweep_options():
    """Check best=False draws no star and logx=False keeps a linear x-axis."""
    ax = plot_lr_sweep([0.0, 0.1], [1.0, 0.5], logx=False, best=False)
    assert len(ax.lines) == 1 and ax.get_xscale() == "linear"


# ---------------------------------------------------------------- bad input


PATH = np.zeros((3, 2))


@pytest.mark.parametrize("call, error, message", [
    (lambda: plot_loss([]), ValueError, r"losses is empty"),
    (lambda: plot_loss({}), ValueError, r"losses is empty"),
    (lambda: plot_loss(["a", "b"]), TypeError, r"losses must be numbers"),
    (lambda: plot_loss(np.zeros((2, 3))), ValueError, r"got shape \(2, 3\)"),
    (lambda: plot_loss([[1.0], [2.0]], labels=["a"]), ValueError,
     r"1 labels for 2 curves"),
    (lambda: compare_optimizers({}), ValueError, r"empty"),
    (lambda: compare_optimizers([1.0, 2.0]), TypeError, r"must be a dict"),
    (lambda: plot_path_1d("f", [1.0]), TypeError, r"f must be a function"),
    (lambda: plot_path_1d(quadratic, np.zeros((3, 2))), ValueError,
     r"history must be 1-D .*got shape \(3, 2\)"),
    (lambda: plot_path_1d(quadratic, [np.nan]), ValueError, r"no finite"),
    (lambda: plot_paths_2d(None, PATH), TypeError, r"f must be a function"),
    (lambda: plot_paths_2d(rosenbrock, np.zeros((5, 3))), ValueError,
     r"shape \(T, 2\).*got \(5, 3\)"),
    (lambda: plot_paths_2d(rosenbrock, {"a": np.zeros(4)}), ValueError,
     r"got \(4,\)"),
    (lambda: plot_paths_2d(rosenbrock, {}), ValueError, r"paths is empty"),
    (lambda: plot_paths_2d(rosenbrock, PATH, levels=1), ValueError,
     r"levels must be >= 2"),
    (lambda: plot_lr_sweep([0.1, 0.2], [1.0]), ValueError,
     r"same non-zero length, got shapes \(2,\) and \(1,\)"),
    (lambda: plot_lr_sweep([0.0, 0.1], [1.0, 0.5]), ValueError,
     r"logx=True needs positive"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    """Check that each bad input raises the stated error and message."""
    with pytest.raises(error, match=message):
        call()
