"""The bug zoo's convolutional bugs: the classic mistakes of a hand-written Conv2d or MaxPool2d
backward (CS231n assignment 2, CMU 11-785 HW2), as mutants of handbp's own classes.

Each entry has the zoo's format (``handbp.zoo.Bug``): ``build(rng)`` returns a small CNN with one
bug planted, its loss, optimizer and a few batches of 1 × 8 × 8 images; where crosscheck should
diverge, and with which hint, is in ``crosscheck.zoo``. The backwards here are written the naive
way a student writes them, one kernel tap at a time, so that the bug is one visible line; read each
docstring for what is wrong, and ``handbp.conv`` / ``handbp.pooling`` for what is right.
"""
import numpy as np

from . import optim
from .activations import ReLU
from .conv import Conv2d
from .flatten import Flatten
from .layers import Linear
from .losses import CrossEntropyLoss
from .module import Sequential
from .pooling import MaxPool2d
from .zoo import Bug


class Conv2dWeightGradFlipped(Conv2d):
    """dW computed as a true convolution of x with dy: the kernel flipped where it must not be.
    torch's Conv2d is a cross-correlation, so dW[o, c, i, j] = Σ dy[n, o, h, w] · xp[n, c, h + i, w + j],
    with no flip; a student who remembers "the backward of a convolution flips the kernel" applies
    the flip here too, and dW comes out with its kernel axes reversed."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.weight.grad = self.weight.grad[:, :, ::-1, ::-1].copy()
        return dx


class Conv2dBiasNotSummed(Conv2d):
    """db summed over the positions of each sample but not over the batch: (N, O) instead of (O,)."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad = dy.sum(axis=(2, 3))
        return dx


class Conv2dPaddingKept(Conv2d):
    """The input gradient of a padded convolution returned with its padding: dx_pad is built
    right, tap by tap, and then not cut back to the input's size (dx = dx_pad[:, :, p:-p, p:-p])."""

    def backward(self, dy):
        super().backward(dy)                       # dW and db, right
        (N, C, H, W), (_, _, Ho, Wo) = self.last_shapes[0], dy.shape
        (kh, kw), (ph, pw), (dh, dw), (sh, sw) = self.kernel_size, self.padding, self.dilation, self.stride
        dx_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dy.dtype)
        for i in range(kh):                        # tap (i, j) read x_pad[s·h + d·i, s·w + d·j]
            for j in range(kw):
                share = np.einsum("nohw,oc->nchw", dy, self.weight.data[:, :, i, j])
                dx_pad[:, :, i * dh:i * dh + sh * Ho:sh, j * dw:j * dw + sw * Wo:sw] += share
        return dx_pad


class Conv2dStrideIgnored(Conv2d):
    """A strided convolution's input gradient computed as if the stride were 1: each tap sends
    output (h, w)'s gradient to input (h + i, w + j) instead of (s·h + i, s·w + j), so everything
    lands in the top-left corner and the rest of the input gets nothing."""

    def backward(self, dy):
        super().backward(dy)                       # dW and db, right
        (N, C, H, W), (_, _, Ho, Wo) = self.last_shapes[0], dy.shape
        (kh, kw), (ph, pw), (dh, dw) = self.kernel_size, self.padding, self.dilation
        dx_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dy.dtype)
        for i in range(kh):
            for j in range(kw):
                share = np.einsum("nohw,oc->nchw", dy, self.weight.data[:, :, i, j])
                dx_pad[:, :, i * dh:i * dh + Ho, j * dw:j * dw + Wo] += share
        return dx_pad[:, :, ph:ph + H, pw:pw + W].copy()


class MaxPool2dGradToEveryElement(MaxPool2d):
    """Max pooling's gradient sent to every element of its window, as average pooling without the
    division would: only the window's maximum took part in the forward, so only it gets dy."""

    def backward(self, dy):
        super().backward(dy)                       # (keeps the checks of dy)
        k = self.kernel_size
        dx = np.repeat(np.repeat(dy, k[0], axis=-2), k[1], axis=-1)
        x_shape = self.last_shapes[0]
        out = np.zeros(x_shape, dtype=dy.dtype)
        out[..., :dx.shape[-2], :dx.shape[-1]] = dx[..., :x_shape[-2], :x_shape[-1]]
        return out


# -- the cases ------------------------------------------------------------------------------
def cnn(rng, first=Conv2d, pool=MaxPool2d, stride=1, padding=1):
    """Conv2d(1→4, 3×3) → ReLU → MaxPool2d(2) → Flatten → Linear(→3), for 1 × 8 × 8 images."""
    conv = first(1, 4, 3, stride=stride, padding=padding, rng=rng)
    side = (8 + 2 * padding - 3) // stride + 1
    return Sequential(conv, ReLU(), pool(2), Flatten(), Linear(4 * (side // 2) ** 2, 3, rng=rng))


def images(rng, batch=4, steps=3):
    return [(rng.normal(size=(batch, 1, 8, 8)), rng.integers(0, 3, batch)) for _ in range(steps)]


def conv_case(**kwargs):
    def make(rng):
        model = cnn(rng, **kwargs)
        return model, CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), images(rng)
    return make


BUGS = [
    Bug("conv-kernel-flipped-in-weight-grad", "dW computed as a true convolution (kernel flipped) where torch's "
        "cross-correlation needs no flip",
        conv_case(first=Conv2dWeightGradFlipped)),
    Bug("conv-bias-grad-not-summed-over-batch", "the conv bias gradient summed over positions but not over the batch",
        conv_case(first=Conv2dBiasNotSummed)),
    Bug("conv-padding-kept-in-input-grad", "the input gradient returned with the padding still on it",
        conv_case(first=Conv2dPaddingKept)),
    Bug("conv-stride-ignored-in-input-grad", "a strided convolution's input gradient scattered as if the stride were 1",
        conv_case(first=Conv2dStrideIgnored, stride=2)),
    Bug("maxpool-grad-to-every-element", "max pooling's gradient sent to every element of the window, not only "
        "to its maximum",
        conv_case(pool=MaxPool2dGradToEveryElement)),
]
