"""Exercises: a layer with its forward given and its ``backward`` left to write, the derivation to
complete in comments (English or Korean), and the run it is checked on.

``handbp exercise start NAME`` writes the skeleton to a file; ``handbp exercise check FILE`` runs
the file's class through crosscheck (its torch twin, every tensor compared) and prints, per tensor,
exact / close / wrong with the error and the hint. The bugs of the zoo are exercises too
("find the bug"): ``bug:NAME`` writes the planted class, to be fixed.

This module is handbp's part (the skeletons and the runs, NumPy only); the checking is the command
line's (``handbp.commands.exercise``), which needs crosscheck and torch.
"""
import ast
import inspect
from dataclasses import dataclass

import numpy as np

from . import optim
from .activations import Tanh
from .flatten import Flatten
from .layers import Linear
from .losses import MSELoss
from .module import Sequential
from .shape import SelectOutput

TODO = 'raise NotImplementedError("TODO: write backward")'


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``skeleton[lang]`` is the file ``start`` writes; ``build(cls, rng)`` returns
    the run ``(model, loss, optimizer, data)`` with the student's class ``cls`` in it."""

    name: str
    title: dict
    cls: str
    skeleton: dict
    build: object


HEADER = {
    "en": '''"""handbp exercise {name}: {title}.

Write {cls}.backward below: the forward is given, with what it caches; the derivation in the
comments has blanks (____) to complete first. Then check it against torch, tensor by tensor:

    handbp exercise check {file}

handbp's own class gives __init__ (the parameters and their names, as torch's); the class here
replaces its forward and its backward.
"""
import numpy as np

import handbp as hb

EXERCISE = "{name}"
CLASS = "{cls}"
LANG = "en"
''',
    "ko": '''"""handbp 연습 문제 {name}: {title}.

아래 {cls}.backward를 작성하세요. 순전파(forward)와 그것이 저장하는 값은 주어져 있습니다. 먼저
주석에 있는 유도 과정의 빈칸(____)을 채우고, torch와 텐서 하나하나를 비교해 확인하세요:

    handbp exercise check {file}

__init__(파라미터와 그 이름, torch와 같음)은 handbp의 클래스가 제공하고, 여기의 클래스는
forward와 backward를 바꿔 씁니다.
"""
import numpy as np

import handbp as hb

EXERCISE = "{name}"
CLASS = "{cls}"
LANG = "ko"
''',
}

# -- the layers: forward given, backward to write ------------------------------------------
SIGMOID = {
    "title": {"en": "the sigmoid's backward", "ko": "시그모이드의 역전파"},
    "code": '''

class Sigmoid(hb.Sigmoid):
    """y = σ(x) = 1 / (1 + e⁻ˣ), element-wise."""

    def forward(self, x):
        self.last_o = 1 / (1 + np.exp(-x))       # {cache}
        return self.last_o

    def backward(self, dy):
{comments}
        {todo}
''',
    "cache": {"en": "cached: the output y, all the backward needs", "ko": "저장: 출력 y, 역전파에 필요한 전부"},
    "comments": {"en": '''        # dy = dL/dy, the upstream gradient (the shape of y). Return dL/dx = dL/dy · dy/dx, element-wise
        # (the chain rule).
        #
        #   σ(x) = 1 / (1 + e⁻ˣ)
        #   dσ/dx = e⁻ˣ / (1 + e⁻ˣ)² = σ(x) · ____        (e⁻ˣ / (1 + e⁻ˣ) = 1 − ____)
        #   so, with the cached y = self.last_o:  dy/dx = ____
        #   dL/dx = dy · ____''',
                     "ko": '''        # dy = dL/dy, 상류 기울기(y와 같은 모양). dL/dx = dL/dy · dy/dx를 원소별로 돌려주세요
        # (연쇄 법칙).
        #
        #   σ(x) = 1 / (1 + e⁻ˣ)
        #   dσ/dx = e⁻ˣ / (1 + e⁻ˣ)² = σ(x) · ____        (e⁻ˣ / (1 + e⁻ˣ) = 1 − ____)
        #   저장해 둔 y = self.last_o로 쓰면:  dy/dx = ____
        #   dL/dx = dy · ____'''},
}

LINEAR = {
    "title": {"en": "the fully connected layer's backward", "ko": "완전 연결 레이어의 역전파"},
    "code": '''

class Linear(hb.Linear):
    """y = x Wᵀ + b, for a batch x of shape (N, in); W is (out, in), torch's layout."""

    def forward(self, x):
        self.last_x = x                           # {cache}
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
{comments}
        {todo}
''',
    "cache": {"en": "cached: the input x, for dW", "ko": "저장: 입력 x, dW에 필요"},
    "comments": {"en": '''        # dy = dL/dy, the upstream gradient, shape (N, out). ADD dL/dW and dL/db into the parameters'
        # gradients (self.weight.accumulate(dW), self.bias.accumulate(db)) and return dL/dx.
        #
        #   y[n, o] = Σᵢ x[n, i] W[o, i] + b[o]
        #   ∂L/∂W[o, i] = Σₙ dy[n, o] · ____      →  dW = ____      shape (out, in)
        #   ∂L/∂b[o]    = Σₙ ____                 →  db = ____      shape (out,)
        #   ∂L/∂x[n, i] = Σₒ dy[n, o] · ____      →  dx = ____      shape (N, in)
        #   (one sample, x of shape (in,): dW = dy xᵀ, an outer product)''',
                     "ko": '''        # dy = dL/dy, 상류 기울기, 모양 (N, out). dL/dW와 dL/db를 파라미터의 기울기에 더하고
        # (self.weight.accumulate(dW), self.bias.accumulate(db)) dL/dx를 돌려주세요.
        #
        #   y[n, o] = Σᵢ x[n, i] W[o, i] + b[o]
        #   ∂L/∂W[o, i] = Σₙ dy[n, o] · ____      →  dW = ____      모양 (out, in)
        #   ∂L/∂b[o]    = Σₙ ____                 →  db = ____      모양 (out,)
        #   ∂L/∂x[n, i] = Σₒ dy[n, o] · ____      →  dx = ____      모양 (N, in)
        #   (샘플 하나, x의 모양이 (in,)이면: dW = dy xᵀ, 외적)'''},
}

MSE = {
    "title": {"en": "½-MSE's gradient", "ko": "½-MSE의 기울기"},
    "code": '''

class MeanSquaredError(hb.MeanSquaredError):
    """L = ½ · mean((h − y)²), the mean over all n elements (the seed notebook's loss)."""

    def forward(self, h, y):
        self.last_diff = h - y                    # {cache}
        self._cache = True
        return 0.5 * np.mean(np.square(self.last_diff))

    def backward(self, dy=1.0):
{comments}
        {todo}
''',
    "cache": {"en": "cached: h − y", "ko": "저장: h − y"},
    "comments": {"en": '''        # Return dL/dh, the shape of h (dy = 1.0 when L is the final loss: multiply by it).
        #
        #   L = ½ · (1/n) Σᵢ (hᵢ − yᵢ)²,  n = self.last_diff.size
        #   ∂L/∂hᵢ = ½ · (1/n) · ____ · (hᵢ − yᵢ) = ____
        #   (the ½ cancels the 2 of the square; the 1/n of the mean does not cancel)''',
                     "ko": '''        # dL/dh를 돌려주세요, h와 같은 모양 (L이 최종 손실이면 dy = 1.0: 곱해 주세요).
        #
        #   L = ½ · (1/n) Σᵢ (hᵢ − yᵢ)²,  n = self.last_diff.size
        #   ∂L/∂hᵢ = ½ · (1/n) · ____ · (hᵢ − yᵢ) = ____
        #   (½은 제곱에서 내려온 2와 상쇄되지만, 평균의 1/n은 상쇄되지 않습니다)'''},
}

SOFTMAX_CE = {
    "title": {"en": "softmax + cross-entropy's gradient", "ko": "소프트맥스 + 교차 엔트로피의 기울기"},
    "code": '''

class CrossEntropyLoss(hb.CrossEntropyLoss):
    """L = −(1/N) Σₙ log softmax(zₙ)[yₙ], logits z of shape (N, C), class indices y of shape (N,)."""

    def forward(self, z, y):
        shifted = z - z.max(axis=1, keepdims=True)        # the same softmax, and no overflow
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.last_softmax, self.last_y = np.exp(logp), y  # {cache}
        self._cache = True
        return -logp[np.arange(len(y)), y].mean()

    def backward(self, dy=1.0):
{comments}
        {todo}
''',
    "cache": {"en": "cached: softmax(z) and the targets", "ko": "저장: softmax(z)와 정답"},
    "comments": {"en": '''        # Return dL/dz, shape (N, C) (dy = 1.0 when L is the final loss: multiply by it).
        #
        #   sₙ = softmax(zₙ),  Lₙ = −log sₙ[yₙ] = −zₙ[yₙ] + log Σⱼ e^zₙ[j]
        #   ∂Lₙ/∂zₙ[c] = −[c = yₙ] + ____          (the derivative of log Σⱼ e^zⱼ is softmax)
        #   so ∂Lₙ/∂zₙ = sₙ − onehot(yₙ), and with the mean over the batch: dL/dz = ____''',
                     "ko": '''        # dL/dz를 돌려주세요, 모양 (N, C) (L이 최종 손실이면 dy = 1.0: 곱해 주세요).
        #
        #   sₙ = softmax(zₙ),  Lₙ = −log sₙ[yₙ] = −zₙ[yₙ] + log Σⱼ e^zₙ[j]
        #   ∂Lₙ/∂zₙ[c] = −[c = yₙ] + ____          (log Σⱼ e^zⱼ의 미분은 softmax)
        #   그래서 ∂Lₙ/∂zₙ = sₙ − onehot(yₙ), 배치 평균까지 넣으면: dL/dz = ____'''},
}

BATCHNORM = {
    "title": {"en": "batch normalization's backward", "ko": "배치 정규화의 역전파"},
    "code": '''

class BatchNorm1d(hb.BatchNorm1d):
    """x̂ = (x − μ) / σ per channel over the batch (μ the mean, σ = √(var + eps), var biased),
    y = γ x̂ + β; x of shape (N, C), training mode."""

    def forward(self, x):
        n = x.shape[0]
        mu, var = x.mean(axis=0), x.var(axis=0)
        self.num_batches_tracked += 1             # the running estimates, as torch keeps them
        self.running_mean[...] = 0.9 * self.running_mean + 0.1 * mu
        self.running_var[...] = 0.9 * self.running_var + 0.1 * var * n / (n - 1)
        self.last_inv_std = 1 / np.sqrt(var + self.eps)
        self.last_xhat = (x - mu) * self.last_inv_std      # {cache}
        return self.weight.data * self.last_xhat + self.bias.data

    def backward(self, dy):
{comments}
        {todo}
''',
    "cache": {"en": "cached: x̂ and 1/σ", "ko": "저장: x̂와 1/σ"},
    "comments": {"en": '''        # dy = dL/dy, shape (N, C). ADD dγ and dβ into self.weight and self.bias (accumulate) and
        # return dL/dx. Per channel, over the n = N values; ĝ = dy · γ is the gradient reaching x̂.
        #
        #   dγ = Σₙ dy ⊙ ____,      dβ = Σₙ ____
        #   ∂μ/∂xⱼ = 1/n,   ∂σ/∂xⱼ = x̂ⱼ / n
        #   ∂x̂ᵢ/∂xⱼ = (δᵢⱼ − ____ − x̂ᵢ x̂ⱼ / n) / σ
        #   dxⱼ = Σᵢ ĝᵢ ∂x̂ᵢ/∂xⱼ = (ĝⱼ − mean(ĝ) − x̂ⱼ · mean(____)) / σ''',
                     "ko": '''        # dy = dL/dy, 모양 (N, C). dγ와 dβ를 self.weight와 self.bias에 더하고(accumulate)
        # dL/dx를 돌려주세요. 채널마다 n = N개의 값에 대해; ĝ = dy · γ는 x̂에 도착하는 기울기입니다.
        #
        #   dγ = Σₙ dy ⊙ ____,      dβ = Σₙ ____
        #   ∂μ/∂xⱼ = 1/n,   ∂σ/∂xⱼ = x̂ⱼ / n
        #   ∂x̂ᵢ/∂xⱼ = (δᵢⱼ − ____ − x̂ᵢ x̂ⱼ / n) / σ
        #   dxⱼ = Σᵢ ĝᵢ ∂x̂ᵢ/∂xⱼ = (ĝⱼ − mean(ĝ) − x̂ⱼ · mean(____)) / σ'''},
}

CONV2D = {
    "title": {"en": "the convolution's backward", "ko": "합성곱의 역전파"},
    "code": '''

class Conv2d(hb.Conv2d):
    """y[n, o, h, w] = b[o] + Σ_(c, i, j) W[o, c, i, j] · xp[n, c, h + i, w + j]: torch's Conv2d
    (a cross-correlation) with stride 1, no dilation, one group; xp is x with its zero padding.
    x (N, C, H, W), W (O, C, kh, kw), y (N, O, Ho, Wo)."""

    def forward(self, x):
        ph, pw = self.padding
        kh, kw = self.kernel_size
        self.last_xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        # every kh × kw window of xp, as a view: windows[n, c, h, w, i, j] = xp[n, c, h + i, w + j]
        self.last_windows = np.lib.stride_tricks.sliding_window_view(self.last_xp, (kh, kw), axis=(2, 3))
        # {cache}
        return np.einsum("nchwij,ocij->nohw", self.last_windows, self.weight.data) + self.bias.data[:, None, None]

    def backward(self, dy):
{comments}
        {todo}
''',
    "cache": {"en": "cached: the padded input and its windows", "ko": "저장: 패딩한 입력과 그 창(window)들"},
    "comments": {"en": '''        # dy = dL/dy, shape (N, O, Ho, Wo). ADD dW and db into self.weight and self.bias
        # (accumulate) and return dL/dx, shape (N, C, H, W). y[n, o, h, w] depends on W[o, c, i, j]
        # through the one product W[o, c, i, j] · xp[n, c, h + i, w + j], so:
        #
        #   dW[o, c, i, j] = Σ_(n, h, w) dy[n, o, h, w] · ____          (an einsum with the windows)
        #   db[o] = Σ_(n, h, w) ____
        #   xp[n, c, h + i, w + j] reaches y[n, o, h, w] for every o and every tap (i, j), so for
        #   each tap:  dxp[n, c, h + i, w + j] += Σ_o W[o, c, i, j] · ____
        #   (added for every (i, j): the kernel read it flipped, as seen from x; this is the "full"
        #   convolution of dy with the flipped kernel)
        #   dx = dxp without its ____''',
                     "ko": '''        # dy = dL/dy, 모양 (N, O, Ho, Wo). dW와 db를 self.weight와 self.bias에 더하고(accumulate)
        # dL/dx(모양 (N, C, H, W))를 돌려주세요. y[n, o, h, w]는 W[o, c, i, j]에 곱
        # W[o, c, i, j] · xp[n, c, h + i, w + j] 하나로만 의존하므로:
        #
        #   dW[o, c, i, j] = Σ_(n, h, w) dy[n, o, h, w] · ____          (창들과의 einsum)
        #   db[o] = Σ_(n, h, w) ____
        #   xp[n, c, h + i, w + j]는 모든 o와 모든 탭 (i, j)에서 y[n, o, h, w]에 닿으므로, 탭마다:
        #   dxp[n, c, h + i, w + j] += Σ_o W[o, c, i, j] · ____
        #   (모든 (i, j)에 대해 더함: x에서 보면 커널을 뒤집어 읽은 것, 곧 dy와 뒤집은 커널의
        #   "full" 합성곱)
        #   dx = dxp에서 ____을 뗀 것'''},
}

LSTM_SPEC = {
    "title": {"en": "the LSTM's backward through time", "ko": "LSTM의 시간 역전파(BPTT)"},
    "code": '''

class LSTM(hb.LSTM):
    """One layer, one direction, x of shape (T, N, I) (time first), no initial state (zeros):

        a_t = x_t W_ihᵀ + b_ih + h_(t−1) W_hhᵀ + b_hh, cut into four gates in torch's order i, f, g, o
        i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
        c_t = f ⊙ c_(t−1) + i ⊙ g;          h_t = o ⊙ tanh(c_t)

    Returns (output, (h_n, c_n)): h_t of every step (T, N, H), and the last h and c, (1, N, H) each."""

    def forward(self, x):
        T, N, _ = x.shape
        H = self.hidden_size
        W_ih, W_hh = self.weight_ih_l0.data, self.weight_hh_l0.data
        b = self.bias_ih_l0.data + self.bias_hh_l0.data
        h, c = np.zeros((N, H), x.dtype), np.zeros((N, H), x.dtype)
        out = np.empty((T, N, H), x.dtype)
        self.last_x, self.last_steps = x, []
        for t in range(T):
            a = x[t] @ W_ih.T + h @ W_hh.T + b
            i, f, o = (1 / (1 + np.exp(-a[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
            g = np.tanh(a[:, 2 * H:3 * H])
            h_prev, c_prev = h, c
            c = f * c_prev + i * g
            h = o * np.tanh(c)
            self.last_steps.append((h_prev, c_prev, i, f, g, o, c))      # {cache}
            out[t] = h
        return out, (h[None], c[None])

    def upstream(self, dy):
        """The gradients of forward's (output, (h_n, c_n)), as three arrays: dY (T, N, H), dh_n and
        dc_n (N, H). A part no gradient reached comes as None (the model used only the output, say):
        it is zeros here."""
        d_out, d_last = dy if type(dy) is tuple else (dy, None)
        dh_n, dc_n = (None, None) if d_last is None else d_last
        zeros = np.zeros_like(self.last_steps[-1][0])
        dY = np.zeros((len(self.last_steps),) + zeros.shape, zeros.dtype) if d_out is None else d_out
        return dY, zeros if dh_n is None else dh_n[0], zeros if dc_n is None else dc_n[0]

    def backward(self, dy):
{comments}
        {todo}
''',
    "cache": {"en": "cached per step: h_(t−1), c_(t−1), the gates and c_t",
              "ko": "스텝마다 저장: h_(t−1), c_(t−1), 게이트들과 c_t"},
    "comments": {"en": '''        # dY, dh, dc = self.upstream(dy). ADD the gradients of weight_ih_l0, weight_hh_l0,
        # bias_ih_l0 and bias_hh_l0 (accumulate) and return dL/dx, shape (T, N, I). Go back through
        # time, t = T−1 … 0, carrying dh and dc (what reaches h_t and c_t from the later steps):
        #
        #   dh = dh + dY[t]                          (h_t went to the output and to step t+1)
        #   dc = dc + dh ⊙ o ⊙ (1 − ____)            (h_t = o ⊙ tanh(c_t))
        #   da_i = dc ⊙ g ⊙ i(1 − i),  da_f = dc ⊙ ____ ⊙ f(1 − f),
        #   da_g = dc ⊙ i ⊙ (1 − g²),  da_o = dh ⊙ ____ ⊙ o(1 − o);   da = [da_i, da_f, da_g, da_o]
        #   dW_ih += daᵀ x_t,   dW_hh += daᵀ ____,   db_ih = db_hh += Σₙ da
        #   dx_t = da W_ih;   then, for step t−1:  dh = da ____,   dc = dc ⊙ ____''',
                 "ko": '''        # dY, dh, dc = self.upstream(dy). weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0의
        # 기울기를 더하고(accumulate) dL/dx(모양 (T, N, I))를 돌려주세요. 시간을 거슬러
        # t = T−1 … 0으로 가며, 뒤 스텝들에서 h_t와 c_t에 도착한 dh와 dc를 들고 갑니다:
        #
        #   dh = dh + dY[t]                          (h_t는 출력과 스텝 t+1로 갔다)
        #   dc = dc + dh ⊙ o ⊙ (1 − ____)            (h_t = o ⊙ tanh(c_t))
        #   da_i = dc ⊙ g ⊙ i(1 − i),  da_f = dc ⊙ ____ ⊙ f(1 − f),
        #   da_g = dc ⊙ i ⊙ (1 − g²),  da_o = dh ⊙ ____ ⊙ o(1 − o);   da = [da_i, da_f, da_g, da_o]
        #   dW_ih += daᵀ x_t,   dW_hh += daᵀ ____,   db_ih = db_hh += Σₙ da
        #   dx_t = da W_ih;   그리고 스텝 t−1을 위해:  dh = da ____,   dc = dc ⊙ ____'''},
}


def _run(model, loss, rng, x_shape, y_shape, classes=None, steps=3):
    """The run an exercise is checked on: ``model``, ``loss``, SGD and ``steps`` batches of inputs
    of ``x_shape`` with targets of ``y_shape`` (class indices below ``classes``, or reals)."""
    data = [(rng.normal(size=x_shape),
             rng.integers(0, classes, y_shape) if classes else rng.normal(size=y_shape)) for _ in range(steps)]
    return model, loss, optim.SGD(model.parameters(), lr=0.1), data


def _skeleton(spec, name, cls):
    out = {}
    for lang in ("en", "ko"):
        head = HEADER[lang].format(name=name, title=spec["title"][lang], cls=cls, file=f"{name}.py")
        out[lang] = head + spec["code"].format(cache=spec["cache"][lang], comments=spec["comments"][lang], todo=TODO)
    return out


def _exercise(name, spec, cls, build):
    return Exercise(name, spec["title"], cls, _skeleton(spec, name, cls), build)


LAYERS = [
    _exercise("sigmoid", SIGMOID, "Sigmoid", lambda cls, rng: _run(
        Sequential(Linear(3, 4, rng=rng), cls(), Linear(4, 2, rng=rng)), MSELoss(), rng, (5, 3), (5, 2))),
    _exercise("linear", LINEAR, "Linear", lambda cls, rng: _run(
        Sequential(cls(3, 4, rng=rng), Tanh(), cls(4, 2, rng=rng)), MSELoss(), rng, (5, 3), (5, 2))),
    _exercise("mse", MSE, "MeanSquaredError", lambda cls, rng: _run(
        Sequential(Linear(3, 4, rng=rng), Tanh(), Linear(4, 2, rng=rng)), cls(), rng, (5, 3), (5, 2))),
    _exercise("softmax-cross-entropy", SOFTMAX_CE, "CrossEntropyLoss", lambda cls, rng: _run(
        Sequential(Linear(3, 4, rng=rng), Tanh(), Linear(4, 3, rng=rng)), cls(), rng, (5, 3), (5,), classes=3)),
    _exercise("batchnorm1d", BATCHNORM, "BatchNorm1d", lambda cls, rng: _run(
        Sequential(Linear(3, 4, rng=rng), cls(4), Tanh(), Linear(4, 2, rng=rng)), MSELoss(), rng, (5, 3), (5, 2))),
    _exercise("conv2d", CONV2D, "Conv2d", lambda cls, rng: _run(
        Sequential(cls(2, 3, 3, padding=1, rng=rng), Tanh(), Flatten(), Linear(3 * 5 * 4, 2, rng=rng)), MSELoss(),
        rng, (4, 2, 5, 4), (4, 2))),
    # time first: sequences of 5 steps, a batch of 2, 3 features; a target for every step
    _exercise("lstm", LSTM_SPEC, "LSTM", lambda cls, rng: _run(
        Sequential(cls(3, 4, rng=rng), SelectOutput(0), Flatten(0, 1), Linear(4, 2, rng=rng)), MSELoss(),
        rng, (5, 2, 3), (10, 2))),
]


# -- the zoo's bugs, to find ----------------------------------------------------------------
def _qualified(base):
    """How the exercise file names a handbp class: ``hb.Tanh``, ``hb.optim.SGD``."""
    import handbp
    for prefix, space in (("hb", handbp), ("hb.optim", handbp.optim)):
        if getattr(space, base.__name__, None) is base:
            return f"{prefix}.{base.__name__}"
    raise ValueError(f"exercise: the zoo class's base {base.__name__} is not a public handbp class")


def bug_source(cls):
    """The planted class's code, without its docstring (it names the bug) and under its base
    class's name, deriving from that base (``class Tanh(hb.Tanh)``)."""
    tree = ast.parse(inspect.getsource(cls))
    node = tree.body[0]
    base = cls.__bases__[0]
    node.name = base.__name__
    node.bases = [ast.parse(_qualified(base), mode="eval").body]
    if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
        node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(node)


BUG_HEADER = {
    "en": '''"""handbp exercise {name}: find the bug.

One bug from handbp's bug zoo is planted in the class below. Read it, find what is wrong, fix
it, and check:

    handbp exercise check {file}

(``handbp exercise check`` says where crosscheck first sees it, and its hint.)
"""
import numpy as np

import handbp as hb

EXERCISE = "{name}"
CLASS = "{cls}"
LANG = "en"


''',
    "ko": '''"""handbp 연습 문제 {name}: 버그 찾기.

handbp 버그 동물원의 버그 하나가 아래 클래스에 심어져 있습니다. 읽고, 무엇이 틀렸는지 찾아
고친 뒤 확인하세요:

    handbp exercise check {file}

(``handbp exercise check``가 crosscheck가 처음 찾아낸 자리와 힌트를 알려 줍니다.)
"""
import numpy as np

import handbp as hb

EXERCISE = "{name}"
CLASS = "{cls}"
LANG = "ko"


''',
}


def bug_exercise(bug):
    """The "find the bug" exercise of a zoo ``Bug``: its planted class, to be fixed in place."""
    from .zoo import planted
    found = planted(bug.build(np.random.default_rng(0)))
    if len({type(o) for o in found}) != 1:
        raise ValueError(f"exercise: zoo bug {bug.name}: expected one planted class, found "
                         f"{sorted({type(o).__name__ for o in found})}")
    cls = type(found[0])
    name = f"bug:{bug.name}"
    skeleton = {lang: BUG_HEADER[lang].format(name=name, cls=cls.__bases__[0].__name__, file=_file_name(name)) + bug_source(cls) + "\n"
                for lang in ("en", "ko")}

    def build(student, rng):
        case = bug.build(rng)
        for obj in planted(case):
            object.__setattr__(obj, "__class__", student)    # the same object, with the student's methods
        return case

    return Exercise(name, {"en": f"find the bug ({bug.name})", "ko": f"버그 찾기 ({bug.name})"},
                    cls.__bases__[0].__name__, skeleton, build)


def _file_name(name):
    return name.replace("bug:", "bug-").replace("/", "-") + ".py"


def file_name(exercise):
    """The file ``start`` writes by default: ``sigmoid.py``, ``bug-sign-flipped.py``."""
    return _file_name(exercise.name)


def exercises():
    """Every exercise: the layers, then one per bug of the zoo."""
    from .zoo import bugs
    return LAYERS + [bug_exercise(b) for b in bugs()]


def find(name):
    """The exercise called ``name``; a ValueError listing them if there is none."""
    for e in exercises():
        if e.name == name:
            return e
    raise ValueError(f"exercise: expected one of {', '.join(e.name for e in exercises())}, got {name!r}")
