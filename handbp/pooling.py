"""Pooling: ``MaxPool1d``, ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``, with torch's
arguments, output sizes and tie rules. Windows are read as im2col reads them (``handbp.im2col``).

Max pooling passes each window's largest value on, and its backward routes each gradient to that
one element (the others get nothing; an element that is the max of several overlapping windows
receives the sum). Ties go where torch's CPU kernel sends them: it scans a window row by row and
keeps a value only if it is strictly larger than the best so far, so the *first* maximum in that
order wins (and a NaN, once met, is replaced only by a later NaN: the last NaN wins). Average
pooling spreads each gradient evenly over its window: dx = dy / (the window's divisor).
"""
import numpy as np

from . import validate
from .errors import LayerValueError
from .im2col import output_size, windows
from .module import Module


def _check_input(layer, x, dims, channels=None):
    """x as a batch ``(N, C, H, W)`` (Conv1d-style inputs get height 1), or a clear error."""
    if x.ndim not in (dims + 1, dims + 2):
        spatial = ("H", "W") if dims == 2 else ("L",)
        raise LayerValueError(layer, f"x: expected shape (N, C, {', '.join(spatial)}) or (C, {', '.join(spatial)}), "
                                     f"got {x.shape}")
    n = x.shape[0] if x.ndim == dims + 2 else 1
    return x.reshape((n, x.shape[-dims - 1]) + ((1,) if dims == 1 else ()) + x.shape[-dims:])


class _Pool(Module):
    """The arguments a pooling layer shares: kernel, stride (default: the kernel), padding (at most
    half the kernel, torch's rule), dilation, ceil_mode; ``dims`` is 1 or 2."""

    dims = 2
    elementwise = False

    def _arguments(self, kernel_size, stride, padding, dilation, ceil_mode):
        owner, n = type(self).__name__, self.dims
        self.kernel_size = validate.sizes(owner, "kernel_size", kernel_size, n)
        self.stride = self.kernel_size if stride is None else validate.sizes(owner, "stride", stride, n)
        self.padding = validate.sizes(owner, "padding", padding, n, low=0)
        self.dilation = validate.sizes(owner, "dilation", dilation, n)
        self.ceil_mode = validate.flag(owner, "ceil_mode", ceil_mode)
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                validate.fail(owner, "padding", f"at most half the kernel size {self.kernel_size} "
                              "(torch's rule)", padding)

    def _2d(self, sizes, fill):
        return tuple(sizes) if self.dims == 2 else (fill,) + tuple(sizes)

    def _geometry(self, x):
        """x as ``(N, C, H, W)``; its output size and paddings ((top, bottom), (left, right)), the
        bottom and right ones large enough for ceil_mode's last window; errors for no output."""
        x4 = _check_input(self, x, self.dims)
        k, s, d = self._2d(self.kernel_size, 1), self._2d(self.stride, 1), self._2d(self.dilation, 1)
        pad = self._2d(self.padding, 0)
        out, pads = [], []
        for axis, name in zip((0, 1), ("height", "width") if self.dims == 2 else (None, "length")):
            size = x4.shape[2 + axis]
            o = output_size(size, (pad[axis], pad[axis]), k[axis], s[axis], d[axis], self.ceil_mode)
            if o < 1:
                raise LayerValueError(self, f"x: the window spans {d[axis] * (k[axis] - 1) + 1} values along the "
                                            f"{name} (kernel_size {k[axis]}, dilation {d[axis]}), more than the padded "
                                            f"input's {size + 2 * pad[axis]} ({name} {size} + 2 × padding "
                                            f"{pad[axis]}), so there is no output; got x of shape {x.shape}")
            out.append(o)
            after = max(pad[axis], (o - 1) * s[axis] + d[axis] * (k[axis] - 1) + 1 - size - pad[axis])
            pads.append((pad[axis], after))
        return x4, (k, s, d), tuple(out), tuple(pads)

    def _reshaped(self, y4, x):
        """A ``(N, C, Ho, Wo)`` result in the input's kind of shape."""
        return y4.reshape(x.shape[:-self.dims] + y4.shape[4 - self.dims:])

    def _samples_apart(self, x):
        """Each sample's windows are its own; an unbatched input has no batch axis to stack along."""
        return "its input is unbatched" if x.ndim == self.dims + 1 else None


def _padded(x4, pads, fill):
    (pt, pb), (pl, pr) = pads
    xp = np.full(x4.shape[:2] + (x4.shape[2] + pt + pb, x4.shape[3] + pl + pr), fill, dtype=x4.dtype)
    xp[:, :, pt:pt + x4.shape[2], pl:pl + x4.shape[3]] = x4
    return xp


class _MaxPoolNd(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        owner = type(self).__name__
        self._arguments(kernel_size, stride, padding, dilation, ceil_mode)
        if validate.flag(owner, "return_indices", return_indices):
            validate.fail(owner, "return_indices", "False (a handbp layer returns one array; where each "
                          "maximum was is kept in last_index)", return_indices)
        self.last_index = None     # flat index, in the padded input, of each output's max
        self.last_shapes = None    # (x, x as (N, C, H, W), its padded buffer, y), for dy's check and dx
        self.last_dtype = None     # x's dtype, which dy must have

    def forward(self, x):
        """y = the max of each window (padding counts as −∞); caches where each max was."""
        x4, (k, s, d), out, pads = self._geometry(x)
        xp = _padded(x4, pads, -np.inf)
        win = windows(xp, k, s, d, out)                              # (N, C, Ho, Wo, kh·kw)
        tap = win.argmax(axis=-1)                                    # the first maximum, as torch
        nan = np.isnan(win)
        if nan.any():                                                # torch keeps the last NaN it meets
            last = win.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1)
            tap = np.where(nan.any(axis=-1), last, tap)
        y = np.take_along_axis(win, tap[..., None], axis=-1)[..., 0]
        if np.isneginf(y).any():       # only −∞ in a window: torch points at its first element inside x
            tap = np.where(np.isneginf(y), _first_inside(out, k, s, d, pads), tap)
        i, j = np.divmod(tap, k[1])                                  # the max's row and column in xp
        rows = (np.arange(out[0]) * s[0])[:, None] + i * d[0]
        cols = np.arange(out[1]) * s[1] + j * d[1]
        planes = np.arange(x4.shape[0] * x4.shape[1]).reshape(x4.shape[:2] + (1, 1))
        self.last_index = (planes * xp.shape[2] + rows) * xp.shape[3] + cols
        y = self._reshaped(y, x)
        self.last_shapes, self.last_dtype = (x.shape, x4.shape, xp.shape, pads, y.shape), x.dtype
        return y

    row_wise = _Pool._samples_apart

    def backward(self, dy):
        """dx[argmax of window w] += dy[w], and the window's other elements get nothing.
        An element that is the max of several overlapping windows gets their sum. Shapes: dy as y, dx as x."""
        shapes = self.last_shapes
        self._need_cache(self.last_index, dy, None if shapes is None else shapes[4], self.last_dtype)
        x_shape, (_, _, H, W), xp_shape, ((pt, _), (pl, _)), _ = shapes
        dxp = np.bincount(self.last_index.ravel(), weights=dy.ravel(), minlength=int(np.prod(xp_shape)))
        return dxp.reshape(xp_shape)[:, :, pt:pt + H, pl:pl + W].astype(dy.dtype).reshape(x_shape)

    def extra_repr(self):
        one = (lambda t: t[0]) if self.dims == 1 else (lambda t: t)
        return (f"kernel_size={one(self.kernel_size)}, stride={one(self.stride)}, padding={one(self.padding)}, "
                f"dilation={one(self.dilation)}, ceil_mode={self.ceil_mode}")

    def config_args(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "ceil_mode": self.ceil_mode}


def _first_inside(out, k, s, d, pads):
    """The tap of each window that is its first element inside the input (not padding)."""
    first = []
    for axis in (0, 1):
        start = np.arange(out[axis]) * s[axis] - pads[axis][0]
        first.append(np.maximum(0, -(start // d[axis])))          # taps before the input starts
    return first[0][:, None] * k[1] + first[1][None, :]


class MaxPool1d(_MaxPoolNd):
    """y[n, c, l] = max_{j < k} xp[n, c, l·s + j·d]: torch's MaxPool1d (padding counts as −∞).

    Args:
        kernel_size: k. stride: s (default: k). padding: at most k/2 (torch's rule).
        dilation: d, the spacing of the taps (default 1). ceil_mode: keep a last, partial window.
        return_indices: False only (where each max was is kept as ``last_index``).

    Shape:
        x: ``(N, C, L)`` or ``(C, L)``; y: ``(N, C, Lo)`` or ``(C, Lo)``.
    """

    dims = 1


class MaxPool2d(_MaxPoolNd):
    """y[n, c, h, w] = max_{i, j} xp[n, c, h·sh + i·dh, w·sw + j·dw]: torch's MaxPool2d (padding
    counts as −∞; ties go to the first maximum, row by row, as torch's CPU kernel sends them).

    Args:
        kernel_size: (kh, kw) or one integer. stride: (default: the kernel size).
        padding: at most half the kernel (torch's rule). dilation: the spacing of the taps.
        ceil_mode: keep a last, partial window. return_indices: False only.

    Shape:
        x: ``(N, C, H, W)`` or ``(C, H, W)``; y: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``.
    """

    dims = 2


class AvgPool2d(_Pool):
    """y[n, c, h, w] = Σ_{i, j} xp[n, c, h·sh + i, w·sw + j] / divisor: torch's AvgPool2d.

    The divisor of a window is, as in torch's kernel: ``divisor_override`` if given; else with
    ``count_include_pad`` the window's size counting its padding (but not what ceil_mode's last
    window reaches beyond the padding); else the number of input elements it covers.

    Args:
        kernel_size: (kh, kw) or one integer. stride: (default: the kernel size).
        padding: zeros on each side, at most half the kernel (torch's rule).
        ceil_mode: keep a last, partial window. count_include_pad: see above (default True).
        divisor_override: a positive integer to divide every window's sum by, or None.

    Shape:
        x: ``(N, C, H, W)`` or ``(C, H, W)``; y: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``.
    """

    dims = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        owner = type(self).__name__
        self._arguments(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = validate.flag(owner, "count_include_pad", count_include_pad)
        self.divisor_override = validate.optional(validate.integer, owner, "divisor_override", divisor_override,
                                                  low=1)
        self.last_divisor = None   # each window's divisor (Ho, Wo), for dx
        self.last_shapes = None    # (x, x as (N, C, H, W), the padded buffer, y, paddings)

    def _divisor(self, x4, out, pads):
        """Each window's divisor ``(Ho, Wo)``, per axis as torch's kernel counts it, multiplied."""
        if self.divisor_override is not None:
            return np.full(out, float(self.divisor_override))
        counts = []
        for axis in (0, 1):
            size, k, s, p = x4.shape[2 + axis], self.kernel_size[axis], self.stride[axis], self.padding[axis]
            start = np.arange(out[axis]) * s - p
            end = np.minimum(start + k, size + p)                 # the window, its padding included
            if not self.count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            counts.append(end - start)
        return np.outer(counts[0], counts[1]).astype(np.float64)

    def forward(self, x):
        """y = (the sum of each window, zero padding) / its divisor; caches the divisors."""
        x4, (k, s, _), out, pads = self._geometry(x)
        xp = _padded(x4, pads, 0)
        total = np.zeros(x4.shape[:2] + out, dtype=x.dtype)
        for i in range(k[0]):                    # tap by tap, in the order torch sums a window
            for j in range(k[1]):
                total += xp[:, :, i:i + s[0] * out[0]:s[0], j:j + s[1] * out[1]:s[1]]
        divisor = self._divisor(x4, out, pads).astype(x.dtype)
        y = self._reshaped(total / divisor, x)
        self.last_divisor, self.last_shapes = divisor, (x.shape, x4.shape, xp.shape, y.shape, pads)
        return y

    row_wise = _Pool._samples_apart

    def backward(self, dy):
        """dx[n, c, h·sh + i, w·sw + j] += dy[n, c, h, w] / divisor[h, w], for every tap (i, j).
        Every element of a window gets its share; then the padding is cut off. Shapes: dy as y, dx as x."""
        divisor, shapes = self.last_divisor, self.last_shapes
        self._need_cache(divisor, dy, None if shapes is None else shapes[3])
        x_shape, (N, C, H, W), xp_shape, y_shape, ((pt, _), (pl, _)) = shapes
        g = dy.reshape((N, C) + divisor.shape) / divisor
        dxp = np.zeros(xp_shape, dtype=dy.dtype)
        (kh, kw), (sh, sw), (Ho, Wo) = self.kernel_size, self.stride, divisor.shape
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += g
        return dxp[:, :, pt:pt + H, pl:pl + W].reshape(x_shape)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def config_args(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad,
                "divisor_override": self.divisor_override}


class AdaptiveAvgPool2d(Module):
    """y[n, c, h, w] = mean of x[n, c, a(h) : b(h), a'(w) : b'(w)]: torch's AdaptiveAvgPool2d, the
    windows chosen to give the asked output size: a(h) = ⌊h·H/Ho⌋, b(h) = ⌈(h + 1)·H/Ho⌉.

    A mean over a rectangle is a mean over rows of means over columns, so with Ah ``(Ho, H)``
    holding 1/(b(h) − a(h)) inside window h (and 0 outside), and Aw alike, y = Ah x Awᵀ.

    Args:
        output_size: (Ho, Wo), or one integer for both; None in either place keeps that size.

    Shape:
        x: ``(N, C, H, W)`` or ``(C, H, W)``; y: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``.
    """

    elementwise = False

    def __init__(self, output_size):
        super().__init__()
        owner = "AdaptiveAvgPool2d"
        sizes = list(output_size) if isinstance(output_size, (tuple, list)) and len(output_size) == 2 \
            else [output_size, output_size] if output_size is None or validate.is_number(output_size) else None
        if sizes is None or not all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
                                    for v in sizes):
            validate.fail(owner, "output_size", "a positive integer, None, or a tuple of 2 such", output_size,
                          validate.ArgumentTypeError)
        if any(v is not None and v < 1 for v in sizes):
            validate.fail(owner, "output_size", "a positive integer, None, or a tuple of 2 such", output_size)
        self.output_size = tuple(None if v is None else int(v) for v in sizes)
        self.last_means = None     # (Ah, Aw), for dx
        self.last_shapes = None    # (x, y)

    @staticmethod
    def _means(size, out, dtype):
        """A ``(out, size)``: row h averages x over window h."""
        A = np.zeros((out, size), dtype=dtype)
        for h in range(out):
            a, b = h * size // out, -(-(h + 1) * size // out)
            A[h, a:b] = 1.0 / (b - a)
        return A

    def forward(self, x):
        """y = Ah x Awᵀ (see the class docstring); caches Ah and Aw."""
        x4 = _check_input(self, x, 2)
        H, W = x4.shape[2:]
        if H == 0 or W == 0:
            raise LayerValueError(self, f"x: expected a non-empty height and width, got shape {x.shape}")
        Ho, Wo = (H if self.output_size[0] is None else self.output_size[0],
                  W if self.output_size[1] is None else self.output_size[1])
        Ah, Aw = self._means(H, Ho, x.dtype), self._means(W, Wo, x.dtype)
        y = (Ah @ x @ Aw.T)
        self.last_means, self.last_shapes = (Ah, Aw), (x.shape, y.shape)
        return y

    def backward(self, dy):
        """dx = Ahᵀ dy Aw. Shapes: dy (…, Ho, Wo), Ah (Ho, H), Aw (Wo, W), dx (…, H, W)."""
        means = self.last_means
        self._need_cache(None if means is None else means[0], dy, None if means is None else self.last_shapes[1])
        Ah, Aw = means
        return Ah.T @ dy @ Aw

    def row_wise(self, x):
        """Each sample is averaged on its own; an unbatched input has no batch axis to stack along."""
        return "its input is unbatched" if x.ndim == 3 else None

    def extra_repr(self):
        return f"output_size={self.output_size if self.output_size[0] != self.output_size[1] else self.output_size[0]}"

    def config_args(self):
        return {"output_size": list(self.output_size)}
