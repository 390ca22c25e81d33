"""Convolutions: ``Conv1d`` and ``Conv2d``, torch's cross-correlation, by im2col (``handbp.im2col``).

    y[n, o, ho, wo] = b[o] + Σ_{c, i, j} W[o, c, i, j] · xp[n, g(o)·C/g + c, ho·sh + i·dh, wo·sw + j·dw]

xp is x with its zero padding and g(o) the group of output channel o: with ``groups`` g, the
channels split into g groups, and each group's O/g outputs see only its C/g inputs. The kernel is
not flipped (torch's Conv2d is a cross-correlation); the flip belongs to the backward, where
dx is a "full" convolution of dy with the flipped kernel, which col2im computes without flipping
anything explicitly (it adds each tap's share back where the forward read it).

Conv1d is Conv2d on inputs of height 1.
"""
import math

import numpy as np

from . import validate
from .errors import LayerValueError
from .im2col import Geometry, same_padding
from .layers import init_rng
from .module import Module, Parameter

PADDING_MODES = ("zeros",)


class _ConvNd(Module):
    """What Conv1d and Conv2d share; ``dims`` is 1 or 2. The work is done in two dimensions (a
    Conv1d's input is given height 1)."""

    dims = 2
    elementwise = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, dtype=np.float64, rng=None):
        super().__init__()
        owner, n = type(self).__name__, self.dims
        in_channels = validate.integer(owner, "in_channels", in_channels, low=1)
        out_channels = validate.integer(owner, "out_channels", out_channels, low=1)
        kernel_size = validate.sizes(owner, "kernel_size", kernel_size, n)
        stride = validate.sizes(owner, "stride", stride, n)
        dilation = validate.sizes(owner, "dilation", dilation, n)
        groups = validate.integer(owner, "groups", groups, low=1)
        if isinstance(padding, str):
            padding = validate.choice(owner, "padding", padding, ("same", "valid"))
            if padding == "same" and stride != (1,) * n:
                validate.fail(owner, "padding", f"an integer or a tuple of {n} (torch's rule: padding='same' "
                              f"needs stride 1, and stride is {stride})", padding)
        else:
            padding = validate.sizes(owner, "padding", padding, n, low=0)
        for arg, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                validate.fail(owner, arg, f"a multiple of groups={groups}", channels)
        bias = validate.flag(owner, "bias", bias)
        padding_mode = validate.choice(owner, "padding_mode", padding_mode, PADDING_MODES)
        dtype = validate.float_dtype(owner, "dtype", dtype)
        rng = init_rng(owner, rng)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.padding_mode = padding_mode
        # torch's default init: U(−1/√fan_in, 1/√fan_in) for W and b, fan_in = C/g · kh · kw
        bound = 1 / math.sqrt(in_channels // groups * math.prod(kernel_size))
        shape = (out_channels, in_channels // groups) + kernel_size
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, (out_channels,)).astype(dtype)) if bias else None
        self.last_xp = None            # the padded input (N, C, Hp, Wp), for dW
        self.last_geometry = None      # where the kernel read (im2col.Geometry), for dW and dx
        self.last_shapes = None        # the shapes of x and y, for dy's check and dx

    # -- the two dimensions the work is done in
    def _2d(self, sizes, fill):
        return tuple(sizes) if self.dims == 2 else (fill,) + tuple(sizes)

    def _pads(self):
        if self.padding == "valid":
            pads = ((0, 0),) * self.dims
        elif self.padding == "same":
            pads = same_padding(self.kernel_size, self.dilation)
        else:
            pads = tuple((p, p) for p in self.padding)
        return pads if self.dims == 2 else ((0, 0),) + pads

    def _shape_text(self, batched):
        spatial = ("H", "W") if self.dims == 2 else ("L",)
        return f"({', '.join((('N',) if batched else ()) + (str(self.in_channels),) + spatial)})"

    def _geometry(self, x):
        """x as a batch of 2-D images ``(N, C, H, W)`` (a view), and its Geometry; clear errors
        for a wrong rank or channel count, and for a kernel wider than the padded input."""
        if x.ndim not in (self.dims + 1, self.dims + 2) or x.shape[-self.dims - 1] != self.in_channels:
            raise LayerValueError(self, f"x: expected shape {self._shape_text(True)} or "
                                        f"{self._shape_text(False)}, got {x.shape}")
        n = x.shape[0] if x.ndim == self.dims + 2 else 1
        x4 = x.reshape((n, self.in_channels) + self._2d(x.shape[-self.dims:], 1))
        geo = Geometry(x4.shape, self._2d(self.kernel_size, 1), self._2d(self.stride, 1),
                       self._2d(self.dilation, 1), self._pads())
        names = ("height", "width") if self.dims == 2 else ("length",)
        for axis, name in zip(range(4 - self.dims, 4), names):
            size, (before, after) = x4.shape[axis], geo.pads[axis - 2]
            k, d = geo.kernel[axis - 2], geo.dilation[axis - 2]
            if d * (k - 1) + 1 > size + before + after:
                raise LayerValueError(self, f"x: the kernel spans {d * (k - 1) + 1} values along the {name} "
                                            f"(kernel_size {k}, dilation {d}), more than the padded input's "
                                            f"{size + before + after} ({name} {size} + padding {before} + {after}), "
                                            f"so there is no output position; got x of shape {x.shape}")
        return x4, geo

    def _grouped_weight(self):
        """W as ``(g, O/g, C/g·kh·kw)``: one matrix per group."""
        g = self.groups
        return self.weight.data.reshape(g, self.out_channels // g, -1)

    def forward(self, x):
        """y = W ⋆ x + b, one matrix product per block of samples: ``W (O, C·kh·kw) @ cols``;
        caches the padded input."""
        x4, geo = self._geometry(x)
        g, W = self.groups, self._grouped_weight()
        xp = geo.pad(x4)
        y = np.empty((geo.N, self.out_channels, geo.Ho, geo.Wo), dtype=x.dtype)
        bias = None if self.bias is None else self.bias.data
        for start, stop in geo.blocks():
            cols = geo.im2col(xp[start:stop]).reshape(g, W.shape[2], -1)
            geo.from_grid(np.matmul(W, cols), y[start:stop], bias)
        # y in the input's kind of shape: (N, O, Lo) for Conv1d, no N for an unbatched x
        y = y.reshape(x.shape[:-self.dims - 1] + (self.out_channels,) + y.shape[4 - self.dims:])
        self.last_xp, self.last_geometry, self.last_shapes = xp, geo, (x.shape, y.shape)
        return y

    def backward(self, dy):
        """dW[o, c, i, j] = Σ_{n, ho, wo} dy[n, o, ho, wo] · xp[n, c, ho·sh + i·dh, wo·sw + j·dw]  (dy @ colsᵀ),
        db[o] = Σ_{n, ho, wo} dy[n, o, ho, wo],
        dxp[n, c, ho·sh + i·dh, wo·sw + j·dw] += Σ_o W[o, c, i, j] · dy[n, o, ho, wo]  (col2im(Wᵀ @ dy)),
        dx = dxp without its padding.
        Shapes: dy (N, O, Ho, Wo), W (O, C/g, kh, kw), cols (C·kh·kw, N·Ho·Wo), per group."""
        geo, xp, shapes = self.last_geometry, self.last_xp, self.last_shapes
        self._need_cache(xp, dy, None if shapes is None else shapes[1])
        dy4 = dy.reshape((geo.N, self.out_channels, geo.Ho, geo.Wo))
        g, W = self.groups, self._grouped_weight()
        dW = np.zeros(W.shape, dtype=dy.dtype)
        dxp = np.zeros_like(xp)
        for start, stop in geo.blocks():
            cols = geo.im2col(xp[start:stop]).reshape(g, W.shape[2], -1)
            dy_grid = geo.to_grid(dy4[start:stop]).reshape(g, W.shape[1], -1)
            dW += np.matmul(dy_grid, cols.transpose(0, 2, 1))
            geo.col2im(np.matmul(W.transpose(0, 2, 1), dy_grid), dxp[start:stop])
        self.weight.accumulate(dW.reshape(self.weight.data.shape), fresh=True)
        if self.bias is not None:
            self.bias.accumulate(dy4.sum(axis=(0, 2, 3)), fresh=True)
        return geo.crop(dxp).reshape(shapes[0])

    # -- facts other parts read
    def row_wise(self, x):
        """Each sample of a batch is convolved on its own; an unbatched input has no batch axis to
        stack perturbations along."""
        return "its input is unbatched" if x.ndim == self.dims + 1 else None

    def config_args(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
                "padding_mode": self.padding_mode}

    @classmethod
    def state_shapes(cls, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                     bias=True, padding_mode="zeros"):
        """weight (out_channels, in_channels/groups, *kernel_size), bias (out_channels,); see
        ``Module.state_shapes``."""
        owner = cls.__name__
        in_channels = validate.integer(owner, "in_channels", in_channels, low=1)
        groups = validate.integer(owner, "groups", groups, low=1)
        yield "weight", (validate.integer(owner, "out_channels", out_channels, low=1), in_channels // groups) + \
            validate.sizes(owner, "kernel_size", kernel_size, cls.dims)
        if validate.flag(owner, "bias", bias):
            yield "bias", (out_channels,)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.dims:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1,) * self.dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """y[n, o, l] = b[o] + Σ_{c, j} W[o, c, j] · xp[n, c, l·s + j·d]: torch's Conv1d.

    Args:
        in_channels, out_channels: C and O; both multiples of ``groups``.
        kernel_size: k. stride: s (default 1). dilation: d, the spacing of the taps (default 1).
        padding: zeros added at both ends (an integer), ``"valid"`` (none) or ``"same"`` (the
            output as long as the input; stride 1 only; d·(k − 1) zeros, the odd one at the end).
        groups: the channels split into this many groups, each convolved with its own filters.
        bias: learn b. padding_mode: ``"zeros"`` (torch's other modes are not supported).
        dtype: dtype of the parameters (float64 by default). rng: Generator or seed for the
            initial values (torch's U(−1/√fan_in, 1/√fan_in), fan_in = C/g · k); numpy's global
            state when omitted.

    Shape:
        x: ``(N, C, L)`` or ``(C, L)``; y: ``(N, O, Lo)`` or ``(O, Lo)``,
        Lo = ⌊(L + 2·padding − d·(k − 1) − 1) / s⌋ + 1.

    Attributes:
        weight: ``(out_channels, in_channels/groups, kernel_size)``; bias: ``(out_channels,)``.
    """

    dims = 1


class Conv2d(_ConvNd):
    """y[n, o, h, w] = b[o] + Σ_{c, i, j} W[o, c, i, j] · xp[n, c, h·sh + i·dh, w·sw + j·dw]: torch's Conv2d.

    Args:
        in_channels, out_channels: C and O; both multiples of ``groups``.
        kernel_size: (kh, kw) or one integer for both. stride: (sh, sw) (default 1).
        dilation: (dh, dw), the spacing of the taps (default 1).
        padding: zeros added on each side (an integer or (ph, pw)), ``"valid"`` (none) or ``"same"``
            (the output as large as the input; stride 1 only; d·(k − 1) zeros per axis, the odd
            one at the end).
        groups: the channels split into this many groups, each convolved with its own filters
            (``groups=C``: depthwise).
        bias: learn b. padding_mode: ``"zeros"`` (torch's other modes are not supported).
        dtype: dtype of the parameters (float64 by default). rng: Generator or seed for the
            initial values (torch's U(−1/√fan_in, 1/√fan_in), fan_in = C/g · kh · kw); numpy's
            global state when omitted.

    Shape:
        x: ``(N, C, H, W)`` or ``(C, H, W)``; y: ``(N, O, Ho, Wo)`` or ``(O, Ho, Wo)``,
        Ho = ⌊(H + 2·ph − dh·(kh − 1) − 1) / sh⌋ + 1, and Wo alike.

    Attributes:
        weight: ``(out_channels, in_channels/groups, kh, kw)``; bias: ``(out_channels,)``.
    """

    dims = 2
