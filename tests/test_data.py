"""Tests for course.data: shapes, determinism, the untouched global RNG,
mini-batches that cover every example once, the digits split, bad input."""

import doctest

import numpy as np
import pytest
import torch

import course.data
from course.data import (
    Split,
    iterate_minibatches,
    least_squares,
    load_digits,
    make_classification,
    make_loader,
    make_regression,
)


@pytest.fixture
def global_rng_untouched():
    """Fail the test if it changed torch's or numpy's global random state."""
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    yield
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_docstring_examples():
    """Check that the examples in the docstrings run as shown."""
    assert doctest.testmod(course.data).failed == 0


# ---------------------------------------------------------- make_regression


def test_make_regression_shapes_and_dtypes():
    """Check shapes (n, d), (n,), (d,), () and float32."""
    X, y, w, b = make_regression(n=50, d=4)
    assert X.shape == (50, 4) and y.shape == (50,)
    assert w.shape == (4,) and b.shape == ()
    assert all(t.dtype == torch.float32 for t in (X, y, w, b))


def test_make_regression_is_the_stated_linear_model():
    """Check y = X w + b exactly without noise, and residual std ~ noise."""
    X, y, w, b = make_regression(n=100, d=3, noise=0.0)
    torch.testing.assert_close(y, X @ w + b)
    X, y, w, b = make_regression(n=20000, d=3, noise=0.5)
    assert (y - X @ w - b).std().item() == pytest.approx(0.5, rel=0.03)


def test_make_regression_is_deterministic(global_rng_untouched):
    """Check same seed gives equal tensors, another seed different ones."""
    a, b = make_regression(seed=1), make_regression(seed=1)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    assert not torch.equal(a[0], make_regression(seed=2)[0])


# ------------------------------------------------------ make_classification


def test_make_classification_shapes_and_balance(global_rng_untouched):
    """Check float32 X, int64 labels 0..k-1, balanced classes."""
    X, y = make_classification(n=300, d=5, n_classes=3, seed=4)
    assert X.shape == (300, 5) and X.dtype == torch.float32
    assert y.shape == (300,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [100, 100, 100]


def test_make_classification_blobs_have_unit_spread():
    """Check each class is a unit-variance blob around its own centre."""
    X, y = make_classification(n=3000, d=2, n_classes=2, seed=0)
    for k in range(2):
        assert X[y == k].std(dim=0).tolist() == pytest.approx([1, 1], rel=0.1)


def test_make_classification_is_deterministic():
    """Check same seed gives equal tensors, another seed different ones."""
    X1, y1 = make_classification(seed=3)
    X2, y2 = make_classification(seed=3)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, make_classification(seed=4)[0])


# ------------------------------------------------------------ least_squares


def test_least_squares_recovers_the_true_weights():
    """Check the closed form finds w_true, b_true on noiseless data."""
    X, y, w_true, b_true = make_regression(n=50, d=3, noise=0.0)
    w, b = least_squares(X, y)
    assert w.dtype == torch.float32 and w.shape == (3,) and b.shape == ()
    torch.testing.assert_close(w, w_true, atol=1e-5, rtol=0)
    torch.testing.assert_close(b, b_true, atol=1e-5, rtol=0)


def test_least_squares_matches_numpy_on_noisy_data():
    """Check against numpy.linalg.lstsq, with numpy arrays as input."""
    X, y, _, _ = make_regression(n=40, d=2, noise=1.0, seed=5)
    A = np.hstack([X.numpy().astype(float), np.ones((40, 1))])
    expected = np.linalg.lstsq(A, y.numpy().astype(float), rcond=None)[0]
    w, b = least_squares(X.numpy(), y.numpy())
    np.testing.assert_allclose(np.append(w.numpy(), b.item()), expected,
                               rtol=1e-6)


# -------------------------------------------------------------- load_digits


def test_digits_shapes_classes_and_dtypes(digits):
    """Check the 1797 images split 80/20 into float32 (m, 64) and int64 labels."""
    assert isinstance(digits, Split)
    assert digits.X_train.shape == (1438, 64) and digits.X_val.shape == (359, 64)
    assert digits.X_train.dtype == torch.float32
    assert digits.y_train.dtype == torch.int64
    assert digits.y_train.unique().tolist() == list(range(10))
    assert digits.y_val.unique().tolist() == list(range(10))


def test_digits_are_standardised_with_training_statistics(digits):
    """Check training columns have mean 0 and std 1 (constant columns 0)."""
    X = digits.X_train.double()
    std = X.std(dim=0, correction=0)
    constant = std < 1e-6
    assert 0 < constant.sum() < 64  # the digits have a few always-blank pixels
    torch.testing.assert_close(X.mean(dim=0), torch.zeros(64, dtype=X.dtype),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(std[~constant], torch.ones_like(std[~constant]),
                               atol=1e-5, rtol=0)
    assert torch.all(X[:, constant] == 0)
    assert abs(digits.X_val.mean().item()) < 0.2  # val uses the train stats


def test_digits_split_is_a_seeded_partition(global_rng_untouched):
    """Check the raw split partitions the data set and depends on the seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    raw = load_digits(standardize=False, seed=1)
    X_all = torch.cat([raw.X_train, raw.X_val])
    expected = torch.from_numpy(sklearn_digits().data).float()
    assert sorted(map(tuple, X_all.tolist())) == sorted(map(tuple,
                                                            expected.tolist()))
    again = load_digits(standardize=False, seed=1)
    assert torch.equal(raw.X_val, again.X_val)
    other = load_digits(standardize=False, seed=2)
    assert not torch.equal(raw.y_val, other.y_val)
    assert load_digits(val_fraction=0.5).X_val.shape == (898, 64)


# ------------------------------------------------------ iterate_minibatches


def test_minibatches_cover_every_example_once_per_epoch(global_rng_untouched):
    """Check one shuffled epoch is a permutation, in batches of batch_size."""
    X, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # three epochs, each a new order
        batches = list(iterate_minibatches(X, y, 4, generator=gen))
        assert [len(yb) for _, yb in batches] == [4, 4, 2]
        seen = torch.cat([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(10))
        for xb, yb in batches:  # X and y rows stay paired
            assert torch.equal(xb[:, 0], yb.float())


def test_minibatches_are_deterministic_and_shuffled():
    """Check same seed same order, and that shuffling changes the order."""
    X, y = torch.zeros(50, 2), torch.arange(50)

    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([yb for _, yb in iterate_minibatches(X, y, 8,
                                                              generator=gen)])

    assert torch.equal(order(0), order(0))
    assert not torch.equal(order(0), order(1))
    assert not torch.equal(order(0), torch.arange(50))


def test_minibatches_without_shuffle_and_drop_last():
    """Check the unshuffled order and that drop_last drops the short batch."""
    X, y = torch.arange(10.0), torch.arange(10)
    batches = list(iterate_minibatches(X, y, 3, shuffle=False, drop_last=True))
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    batches = list(iterate_minibatches(X, y, 20, shuffle=False))
    assert len(batches) == 1 and batches[0][1].tolist() == list(range(10))


def test_minibatches_accept_numpy_and_keep_integer_labels():
    """Check numpy inputs become tensors and int labels stay integers."""
    X, y = np.ones((6, 2)), np.arange(6)
    batches = list(iterate_minibatches(X, y, 6, shuffle=False))
    assert batches[0][1].dtype == torch.int64
    assert isinstance(batches[0][0], torch.Tensor)


# -------------------------------------------------------------- make_loader


def test_make_loader_is_seeded_and_covers_everything(global_rng_untouched):
    """Check the loader's epochs repeat with the seed and cover all examples."""
    X, y = torch.arange(20.0), torch.arange(20)

    def epochs(seed):
        loader = make_loader(X, y, 6, seed=seed)
        return [torch.cat([yb for _, yb in loader]).tolist() for _ in range(2)]

    first, again = epochs(0), epochs(0)
    assert first == again
    assert first[0] != first[1]  # a new order each epoch
    assert sorted(first[0]) == list(range(20))
    assert epochs(1) != first
    unshuffled = make_loader(X, y, 6, shuffle=False)
    assert torch.cat([yb for _, yb in unshuffled]).tolist() == list(range(20))
    assert len(unshuffled) == 4


# ---------------------------------------------------------------- bad input


X5, Y5, Y4 = torch.zeros(5, 2), torch.zeros(5), torch.zeros(4)


@pytest.mark.parametrize("call, error, message", [
    (lambda: make_regression(n=0), ValueError, r"n must be >= 1"),
    (lambda: make_regression(noise=-1.0), ValueError, r"noise must be >= 0"),
    (lambda: make_regression(seed=1.5), TypeError, r"seed must be an int"),
    (lambda: make_regression(d="3"), TypeError, r"d must be an int"),
    (lambda: make_classification(n_classes=1), ValueError,
     r"n_classes must be >= 2"),
    (lambda: least_squares(X5, Y4), ValueError,
     r"len\(X\) = 5 and len\(y\) = 4"),
    (lambda: least_squares(torch.zeros(5), Y5), ValueError,
     r"X must have shape \(n, d\).*got \(5,\)"),
    (lambda: least_squares("X", Y5), TypeError, r"X must be a tensor"),
    (lambda: load_digits(val_fraction=0.0), ValueError,
     r"val_fraction must be > 0"),
    (lambda: load_digits(val_fraction=1.0), ValueError,
     r"val_fraction must be < 1"),
    (lambda: iterate_minibatches(X5, Y5, 2), ValueError,
     r"shuffle=True needs a seeded generator.*torch\.Generator"),
    (lambda: iterate_minibatches(X5, Y5, 0, shuffle=False), ValueError,
     r"batch_size must be >= 1"),
    (lambda: iterate_minibatches(X5, Y5, 2.0, shuffle=False), TypeError,
     r"batch_size must be an int"),
    (lambda: iterate_minibatches(X5, Y4, 2, shuffle=False), ValueError,
     r"same length, got len\(X\) = 5 and len\(y\) = 4"),
    (lambda: iterate_minibatches(X5, None, 2, shuffle=False), TypeError,
     r"y must be a tensor"),
    (lambda: iterate_minibatches(torch.tensor(1.0), Y5, 2, shuffle=False),
     ValueError, r"X must have one row per example"),
    (lambda: make_loader(X5, Y4, 2), ValueError, r"len\(X\) = 5"),
    (lambda: make_loader(X5, Y5, 0), ValueError, r"batch_size must be >= 1"),
    (lambda: make_loader(X5, Y5, 2, seed=-1), ValueError, r"seed must be >= 0"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    """Check that each bad input raises the stated error and message, at
    call time (before any batch is requested)."""
    with pytest.raises(error, match=message):
        call()
