"""im2col and col2im: a convolution as one matrix product, and the scatter that is its adjoint.

torch's convolution (a cross-correlation) of x ``(N, C, H, W)`` with a kernel W ``(O, C, kh, kw)``::

    y[n, o, ho, wo] = Σ_{c, i, j} W[o, c, i, j] · xp[n, c, ho·sh + i·dh, wo·sw + j·dw]

where xp is x with its zero padding, (sh, sw) the stride and (dh, dw) the dilation. im2col copies,
for every output position, the C·kh·kw values its window reads into one column; the convolution
is then one matrix product, ``y = W (O, C·kh·kw) @ cols (C·kh·kw, positions)``, and its backward
two more: ``dW = dy @ colsᵀ`` and ``dcols = Wᵀ @ dy``. col2im adds each column of dcols back to
the input positions it was read from (a position read by several windows receives their sum).

The layout, so that building the columns is a copy of long runs and not a gather: each channel of
the padded input is one row-major line, its rows ``Wp`` values long (the padded width rounded up
to a multiple of sw). Tap (i, j) of output (ho, wo) reads the line at::

    (ho·sh + i·dh)·Wp + wo·sw + j·dw  =  off(i, j) + ho·(sh·Wp) + wo·sw,   off(i, j) = i·dh·Wp + j·dw

so the columns of tap (i, j) are the line from off(i, j) on, read with strides (sh·Wp, sw) over a
grid of ``Ho × Wv`` outputs, ``Wv = Wp / sw``: one strided view, copied in one call (with stride 1,
one contiguous run of Ho·Wp values). The grid is wider than the output (Wv ≥ Wo): its extra
columns are computed and dropped, and in the backward they carry dy = 0, so they add nothing.
One more zero row below the image holds what the last row's extra columns read.

The batch goes through in blocks of a few samples, so that a block's columns stay in the
processor's cache from the copy to the products (the columns of a whole batch are C·kh·kw times
the input's size, and streaming them through memory cost more than the products themselves).
The backward copies the columns again from the padded input the forward kept, rather than keeping
them: for a small fraction of the step's time, the step holds no more than one block of them.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

BLOCK_VALUES = 1 << 18      # about this many column values per block (see the module docstring)


def same_padding(kernel, dilation):
    """torch's ``padding="same"``: d·(k − 1) zeros in all, half before (rounded down), the rest after."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))


def output_size(size, pads, kernel, stride, dilation, ceil_mode=False):
    """torch's output length of a window of ``kernel`` taps ``dilation`` apart, moved by ``stride``
    over ``size`` values padded by ``pads`` (before, after); with ``ceil_mode`` a last, partial window
    is kept when it starts inside the input or its leading padding. Below 1 when nothing fits."""
    span = size + pads[0] + pads[1] - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    n = -(-span // stride) + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (n - 1) * stride >= size + pads[0]:
        n -= 1
    return n


class Geometry:
    """Where a 2-D convolution reads, for one input shape: the output size ``(Ho, Wo)``, the padded
    line layout (rows ``Wp`` long, ``Hp`` rows with the spare one), the output grid ``(Ho, Wv)``
    the columns cover, and the blocks of samples. ``pads``: ((top, bottom), (left, right))."""

    def __init__(self, shape, kernel, stride, dilation, pads):
        self.N, self.C, self.H, self.W = shape
        self.kernel, self.stride, self.dilation, self.pads = kernel, stride, dilation, pads
        (pt, pb), (pl, pr) = pads
        self.Ho = output_size(self.H, pads[0], kernel[0], stride[0], dilation[0])
        self.Wo = output_size(self.W, pads[1], kernel[1], stride[1], dilation[1])
        self.Wp = -(-(self.W + pl + pr) // stride[1]) * stride[1]
        self.Wv = self.Wp // stride[1]
        self.Hp = self.H + pt + pb + 1
        self.L = self.Ho * self.Wv                      # columns per sample
        taps = self.C * kernel[0] * kernel[1]
        self.block = max(1, min(self.N, BLOCK_VALUES // max(taps * self.L, 1)))

    def blocks(self):
        """``(start, stop)`` of each block of samples."""
        return [(n, min(n + self.block, self.N)) for n in range(0, self.N, self.block)]

    def pad(self, x):
        """x ``(N, C, H, W)`` placed in a zero buffer ``(N, C, Hp, Wp)`` at its padding offsets."""
        (pt, _), (pl, _) = self.pads
        xp = np.zeros((self.N, self.C, self.Hp, self.Wp), dtype=x.dtype)
        xp[:, :, pt:pt + self.H, pl:pl + self.W] = x
        return xp

    def crop(self, xp):
        """The inverse of ``pad``: the image without its padding, ``(N, C, H, W)`` (a copy)."""
        (pt, _), (pl, _) = self.pads
        return xp[:, :, pt:pt + self.H, pl:pl + self.W].copy()

    def _taps(self, xp, i, j):
        """The view of padded block ``xp`` ``(n, C, Hp, Wp)`` that tap (i, j) reads: ``(n, C, Ho, Wv)``."""
        sn, sc, row, item = xp.strides
        start = xp[:, :, i * self.dilation[0]:, j * self.dilation[1]:]
        return as_strided(start, (xp.shape[0], self.C, self.Ho, self.Wv), (sn, sc, self.stride[0] * row,
                                                                           self.stride[1] * item))

    def im2col(self, xp):
        """The columns of padded block ``xp`` ``(n, C, Hp, Wp)``: ``(C·kh·kw, n·Ho·Wv)``, row
        (c, i, j) holding what tap (i, j) of channel c reads for every output of the grid."""
        n, (kh, kw) = xp.shape[0], self.kernel
        sn, sc, row, item = xp.strides
        view = as_strided(xp, (self.C, kh, kw, n, self.Ho, self.Wv),
                          (sc, self.dilation[0] * row, self.dilation[1] * item, sn, self.stride[0] * row,
                           self.stride[1] * item))
        return np.ascontiguousarray(view).reshape(self.C * kh * kw, n * self.L)

    def col2im(self, dcols, dxp):
        """The adjoint of ``im2col``: adds each column of ``dcols`` ``(C·kh·kw, n·Ho·Wv)`` into the
        padded block ``dxp`` ``(n, C, Hp, Wp)`` where im2col read it, tap by tap."""
        n, (kh, kw) = dxp.shape[0], self.kernel
        d = dcols.reshape(self.C, kh, kw, n, self.Ho, self.Wv)
        for i in range(kh):
            for j in range(kw):
                taps = self._taps(dxp, i, j)
                taps += d[:, i, j].transpose(1, 0, 2, 3)

    def to_grid(self, dy):
        """dy ``(n, O, Ho, Wo)`` on the columns' grid: ``(O, n·Ho·Wv)``, zero in the extra columns."""
        n, O = dy.shape[:2]
        g = np.zeros((O, n, self.Ho, self.Wv), dtype=dy.dtype)
        g[..., :self.Wo] = dy.transpose(1, 0, 2, 3)
        return g.reshape(O, n * self.L)

    def from_grid(self, y, out, bias=None):
        """The grid's outputs ``(O, n·Ho·Wv)`` as ``(n, O, Ho, Wo)`` in ``out``, plus ``bias`` (O,)."""
        n = out.shape[0]
        grid = y.reshape(-1, n, self.Ho, self.Wv)[..., :self.Wo].transpose(1, 0, 2, 3)
        if bias is None:
            out[...] = grid
        else:
            np.add(grid, bias[:, None, None], out=out)


def windows(xp, kernel, stride, dilation, out_size):
    """Every pooling window of padded ``xp`` ``(N, C, Hp, Wp)`` as a copy ``(N, C, Ho, Wo, kh·kw)``,
    the taps of a window in row-major order (i, then j), the order torch scans them."""
    N, C = xp.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (Ho, Wo) = kernel, stride, dilation, out_size
    sn, sc, row, item = xp.strides
    view = as_strided(xp, (N, C, Ho, Wo, kh, kw), (sn, sc, sh * row, sw * item, dh * row, dw * item))
    return np.ascontiguousarray(view).reshape(N, C, Ho, Wo, kh * kw)
