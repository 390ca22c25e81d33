"""The seed notebook: its test cell runs verbatim on handbp and trains every parameter; hb.DNN's
default init draws the notebook's numbers; and handbp equals the notebook's own network with its
two bugs fixed, transcribed below."""
import contextlib
import io

import numpy as np
import pytest

import handbp as hb

# the notebook's test cell ("동작 테스트"), character for character
NOTEBOOK_CELL = """\
x = np.random.normal(0.0, 1.0, (10,))
y = np.random.normal(0.0, 1.0, (2,))

t = time.time()
dnn = DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=Sigmoid)
loss_obj = MeanSquaredError()
for epoch in range(100):
    loss = gradient_descent(dnn, x, y, loss_obj, alpha=0.01)
    print('Epoch {}: Test loss {}'.format(epoch, loss))
print('{} seconds elapsed.'.format(time.time() - t))
"""
PRELUDE = "from handbp import *\nimport time\nimport numpy as np\n"


@pytest.fixture
def global_seed():
    """Seeds numpy's global state (the notebook draws from it) and restores it afterwards."""
    saved = np.random.get_state()
    yield np.random.seed
    np.random.set_state(saved)


@pytest.mark.parametrize("seed", [0, 1, 2024])
def test_notebook_cell_runs_verbatim_and_trains_every_parameter(seed, global_seed):
    ns = {}
    exec(PRELUDE, ns)
    global_seed(seed)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(NOTEBOOK_CELL, ns)
    lines = out.getvalue().splitlines()
    assert len(lines) == 101 and lines[-1].endswith(" seconds elapsed.")
    losses = [float(line.split("Test loss ")[1]) for line in lines[:100]]
    assert [line.split(":")[0] for line in lines[:100]] == [f"Epoch {i}" for i in range(100)]
    assert isinstance(ns["loss"], float) and ns["loss"] == losses[-1]
    assert all(b < a for a, b in zip(losses, losses[1:])), "the loss must fall every epoch"
    assert losses[-1] < losses[0] * 0.99
    # every parameter moved, the weights included (the notebook's weights never did)
    global_seed(seed)
    np.random.normal(0.0, 1.0, (10,)), np.random.normal(0.0, 1.0, (2,))
    start = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid)
    trained = ns["dnn"]
    names = [n for n, _ in trained.named_parameters()]
    assert len(names) == 14 and sum(n.endswith("weight") for n in names) == 7
    for (name, p), (_, p0) in zip(trained.named_parameters(), start.named_parameters()):
        assert np.all(p.data != p0.data), f"{name}: some entries never moved"


# -- the notebook's init -------------------------------------------------------------------------
def notebook_init(hidden_depth, num_neuron, input, output):
    """The notebook's DNN.__init__ draws, in its order: W (i, o) from N(0, 0.01²), then b = 0."""
    def init_var(i, o):
        return np.random.normal(0.0, 0.01, (i, o)), np.zeros((o,))

    params = [init_var(input, num_neuron)]
    for index in range(hidden_depth):
        params.append(init_var(num_neuron, num_neuron))
    params.append(init_var(num_neuron, output))
    return params


@pytest.mark.parametrize("seed, depth, width, inp, out", [(0, 5, 32, 10, 2), (7, 0, 3, 4, 1), (123, 2, 16, 1, 5)])
def test_dnn_default_init_is_the_notebooks_draw(seed, depth, width, inp, out, global_seed):
    global_seed(seed)
    expected = notebook_init(depth, width, inp, out)
    global_seed(seed)
    d = hb.DNN(hidden_depth=depth, num_neuron=width, input=inp, output=out)
    linears = [m for m in d if isinstance(m, hb.Linear)]
    assert len(linears) == len(expected) == depth + 2
    for lin, (W, b) in zip(linears, expected):
        np.testing.assert_array_equal(lin.weight.data, W.T)          # stored (out, in): W transposed
        np.testing.assert_array_equal(lin.bias.data, b)
    # and drew nothing else: numpy's global state is where the notebook's init leaves it
    after = np.random.normal()
    global_seed(seed)
    notebook_init(depth, width, inp, out)
    assert after == np.random.normal()


# -- the notebook's network, transcribed, with its two bugs fixed ------------------------------------
# Copied from the notebook (cells 13-22) with two changes, marked FIXED:
# 1. calc_gradient stored the weight gradient as ``l0.dw`` while gradient_descent read ``layer.dW``
#    (zeros), so the weights never moved;
# 2. MeanSquaredError.grad returned h - y, the gradient of ½·Σ(h-y)², not of ½·mean(h-y)².
def _t(x):
    return np.transpose(x)


def _m(A, B):
    return np.matmul(A, B)


class Sigmoid:
    def __init__(self):
        self.last_o = 1

    def __call__(self, x):
        self.last_o = 1 / (1.0 + np.exp(-x))
        return self.last_o

    def grad(self):
        return self.last_o * (1 - self.last_o)


class MeanSquaredError:
    def __init__(self):
        self.dh = 1
        self.last_diff = 1

    def __call__(self, h, y):
        self.last_diff = h - y
        return 1 / 2 * np.mean(np.square(h - y))

    def grad(self):
        return self.last_diff / self.last_diff.size      # FIXED (2): the mean's 1/n


class Neuron:
    def __init__(self, W, b, a_obj):
        self.W = W
        self.b = b
        self.a = a_obj()
        self.dW = np.zeros_like(self.W)
        self.dW = np.zeros_like(self.b)
        self.dh = np.zeros_like(_t(self.W))
        self.last_x = np.zeros((self.W.shape[0]))
        self.last_h = np.zeros((self.W.shape[1]))

    def __call__(self, x):
        self.last_x = x
        self.last_h = _m(_t(self.W), x) + self.b
        return self.a(self.last_h)

    def grad(self):
        return self.W * self.a.grad()

    def grad_W(self, dh):
        grad = np.ones_like(self.W)
        grad_a = self.a.grad()
        for j in range(grad.shape[1]):
            grad[:, j] = dh[j] * grad_a[j] * self.last_x
        return grad

    def grad_b(self, dh):
        return dh * self.a.grad() * 1


class DNN:
    def __init__(self, hidden_depth, num_neuron, input, output, activation=Sigmoid):
        def init_var(i, o):
            return np.random.normal(0.0, 0.01, (i, o)), np.zeros((o,))

        self.sequence = list()
        W, b = init_var(input, num_neuron)
        self.sequence.append(Neuron(W, b, activation))
        for index in range(hidden_depth):
            W, b = init_var(num_neuron, num_neuron)
            self.sequence.append(Neuron(W, b, activation))
        W, b = init_var(num_neuron, output)
        self.sequence.append(Neuron(W, b, activation))

    def __call__(self, x):
        for layer in self.sequence:
            x = layer(x)
        return x

    def calc_gradient(self, loss_obj):
        loss_obj.dh = loss_obj.grad()
        self.sequence.append(loss_obj)
        for i in range(len(self.sequence) - 1, 0, -1):
            l1 = self.sequence[i]
            l0 = self.sequence[i - 1]
            l0.dh = _m(l0.grad(), l1.dh)
            l0.dW = l0.grad_W(l1.dh)                         # FIXED (1): was l0.dw
            l0.db = l0.grad_b(l1.dh)
        self.sequence.remove(loss_obj)


def gradient_descent(network, x, y, loss_obj, alpha=0.01):
    loss = loss_obj(network(x), y)
    network.calc_gradient(loss_obj)
    for layer in network.sequence:
        layer.W += -alpha * layer.dW
        layer.b += -alpha * layer.db
    return loss


@pytest.mark.parametrize("seed, depth, width, alpha", [(0, 5, 32, 0.01), (1, 2, 8, 0.5), (5, 0, 4, 3.0)])
def test_handbp_equals_the_fixed_notebook(seed, depth, width, alpha, global_seed):
    runs = {}
    for name, (make_dnn, sigmoid, mse, step) in {
            "notebook": (DNN, Sigmoid, MeanSquaredError, gradient_descent),
            "handbp": (hb.DNN, hb.Sigmoid, hb.MeanSquaredError, hb.gradient_descent)}.items():
        global_seed(seed)
        x = np.random.normal(0.0, 1.0, (10,))
        y = np.random.normal(0.0, 1.0, (2,))
        dnn = make_dnn(hidden_depth=depth, num_neuron=width, input=10, output=2, activation=sigmoid)
        loss_obj = mse()
        losses = [step(dnn, x, y, loss_obj, alpha=alpha) for _ in range(40)]
        runs[name] = losses, dnn
    (ref, ref_dnn), (ours, our_dnn) = runs["notebook"], runs["handbp"]
    assert ref[-1] < ref[0]                                      # the fixed notebook learns
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)
    linears = [m for m in our_dnn if isinstance(m, hb.Linear)]
    for k, (lin, neuron) in enumerate(zip(linears, ref_dnn.sequence)):
        np.testing.assert_allclose(lin.weight.data, neuron.W.T, rtol=1e-12, atol=1e-16, err_msg=f"layer {k} W")
        np.testing.assert_allclose(lin.bias.data, neuron.b, rtol=1e-12, atol=1e-16, err_msg=f"layer {k} b")
