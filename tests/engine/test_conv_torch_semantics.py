"""The convolutional layers give torch's values where torch's semantics are subtle: max pooling's
ties and NaNs (routed as torch's CPU kernel routes them), padding="same" with even kernels, output
sizes with ceil_mode, AvgPool2d's divisors, AdaptiveAvgPool2d's windows; each case built so that
the subtle part decides the result (ties by construction, not by chance)."""
import numpy as np
import pytest

import handbp as hb

torch = pytest.importorskip("torch")


def torch_pool(layer, x, dy):
    """torch's output and input gradient for the twin of ``layer`` (a handbp pooling layer)."""
    import crosscheck as cc
    twin = cc.mirror(hb.Sequential(layer))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = twin(xt)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), xt.grad.numpy()


TIES = {
    # every window constant: the gradient goes to each window's first element
    "constant": lambda rng, shape: np.ones(shape),
    # values 0 or 1: most windows hold several maxima
    "binary": lambda rng, shape: rng.integers(0, 2, shape).astype(np.float64),
    # a checkerboard of 1s in a field of 0s
    "checkerboard": lambda rng, shape: (np.indices(shape).sum(axis=0) % 2).astype(np.float64),
}
POOLS = {
    "MaxPool2d-2": lambda: hb.MaxPool2d(2),
    "MaxPool2d-overlap": lambda: hb.MaxPool2d(3, stride=1, padding=1),
    "MaxPool2d-dilated-ceil": lambda: hb.MaxPool2d((2, 3), stride=(2, 1), dilation=(2, 1), padding=1, ceil_mode=True),
    "MaxPool1d-overlap": lambda: hb.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),
}


@pytest.mark.parametrize("ties", list(TIES))
@pytest.mark.parametrize("pool", list(POOLS))
def test_max_pooling_routes_ties_as_torch(pool, ties, rng):
    layer = POOLS[pool]()
    shape = (2, 3, 6, 7) if layer.dims == 2 else (2, 3, 9)
    x = TIES[ties](rng, shape)
    y = layer(x)
    dy = rng.normal(size=y.shape)
    y_t, dx_t = torch_pool(layer, x, dy)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_allclose(layer.backward(dy), dx_t, rtol=1e-15, atol=0)   # sums of the same dy terms


def test_max_pooling_takes_the_first_maximum_in_row_major_order():
    """A 2×2 window [[1, 3], [3, 2]]: the max 3 is at (0, 1) and (1, 0); torch keeps (0, 1)."""
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    layer = hb.MaxPool2d(2)
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1))), [[[[0.0, 1.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("where", [[(0, 0)], [(0, 1), (1, 0)], [(1, 1)]], ids=["first", "two", "last"])
def test_max_pooling_routes_nan_as_torch(where):
    """A NaN in a window is its max, and of several NaNs the last torch meets (the forward is run
    directly: a model's input must be finite, but a layer inside a model can meet a NaN)."""
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    for i, j in where:
        x[0, 0, i, j] = np.nan
    layer = hb.MaxPool2d(2)
    y = layer.forward(x)
    dy = np.ones(y.shape)
    y_t, dx_t = torch_pool(layer, x, dy)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(layer.backward(dy), dx_t)


def test_a_window_of_minus_infinity_routes_to_its_first_element_inside_the_input():
    x = np.full((1, 1, 3, 3), -np.inf)
    layer = hb.MaxPool2d(2, stride=2, padding=1)
    y = layer.forward(x)
    dy = np.arange(1.0, 1.0 + y.size).reshape(y.shape)
    y_t, dx_t = torch_pool(layer, x, dy)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(layer.backward(dy), dx_t)


@pytest.mark.parametrize("kernel, dilation", [(2, 1), (4, 1), (3, 2), ((2, 5), (3, 1))])
def test_padding_same_puts_the_odd_zero_at_the_end_as_torch(kernel, dilation, rng):
    """With an even total padding d·(k − 1) odd, torch pads one more zero after than before; a
    wrong side shifts the output by one position."""
    conv = hb.Conv2d(2, 3, kernel, padding="same", dilation=dilation, rng=rng)
    x = rng.normal(size=(2, 2, 7, 8))
    twin = torch.nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(conv.weight.data))
        twin.bias.copy_(torch.from_numpy(conv.bias.data))
    y = conv(x)
    assert y.shape == (2, 3, 7, 8)
    np.testing.assert_allclose(y, twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", [
    lambda: hb.MaxPool2d(3, stride=2, ceil_mode=True), lambda: hb.MaxPool2d(2, stride=2, padding=1, ceil_mode=True),
    lambda: hb.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), lambda: hb.AvgPool2d(2, 3, 1, ceil_mode=True),
    lambda: hb.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), lambda: hb.AvgPool2d(3, 1, 1),
    lambda: hb.AvgPool2d(2, divisor_override=3), lambda: hb.AdaptiveAvgPool2d((3, 4)), lambda: hb.AdaptiveAvgPool2d((5, None)),
    lambda: hb.MaxPool1d(4, stride=3, ceil_mode=True),
], ids=["max-ceil", "max-pad-ceil", "avg-pad-ceil", "avg-stride3-ceil", "avg-exclude-ceil", "avg-pad",
        "avg-divisor", "adaptive", "adaptive-none", "max1d-ceil"])
@pytest.mark.parametrize("size", [(5, 7), (6, 6), (8, 9)], ids=str)
def test_pooling_output_sizes_and_values_are_torch(layer, size, rng):
    """The sizes where ceil_mode keeps or drops a last window, and the divisors of windows that
    reach into the padding or past it."""
    layer = layer()
    x = rng.normal(size=(2, 3) + (size if getattr(layer, "dims", 2) == 2 else size[1:]))
    y = layer(x)
    dy = rng.normal(size=y.shape)
    y_t, dx_t = torch_pool(layer, x, dy)
    assert y.shape == y_t.shape
    np.testing.assert_allclose(y, y_t, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.backward(dy), dx_t, rtol=1e-12, atol=1e-15)
