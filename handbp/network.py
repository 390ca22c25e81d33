"""The seed notebook's network and its one-step training function, on handbp's modules."""
import numpy as np

from . import validate
from .activations import Sigmoid
from .errors import ArgumentTypeError, describe
from .layers import Linear, init_rng
from .module import Module, Sequential


class DNN(Sequential):
    """The notebook's fully connected network, as a Sequential::

        Linear(input → num_neuron), act,
        hidden_depth × [Linear(num_neuron → num_neuron), act],
        Linear(num_neuron → output), act

    Args:
        hidden_depth: number of num_neuron → num_neuron layers (≥ 0).
        num_neuron: width of the hidden layers (≥ 1).
        input, output: feature counts in and out (≥ 1).
        activation: a Module class (or a zero-argument factory), used after every Linear,
            the last one included, as in the notebook.
        init: ``"notebook"`` (default): W from N(0, std²), b = 0, drawn in the notebook's order
            from ``rng`` or numpy's global state, so ``np.random.seed(s)`` gives the notebook's
            numbers; ``"torch"``: torch's default U(±1/√fan_in).
        std: the notebook init's standard deviation (0.01).
        rng: ``np.random.Generator`` (or a seed) to draw from instead of numpy's global state.
        dtype: float64 (default) or float32.
    """

    def __init__(self, hidden_depth, num_neuron, input, output, activation=Sigmoid, *,
                 init="notebook", std=0.01, rng=None, dtype=np.float64):
        hidden_depth = validate.integer("DNN", "hidden_depth", hidden_depth, low=0)
        num_neuron, input, output = (validate.integer("DNN", name, v, low=1) for name, v in (
            ("num_neuron", num_neuron), ("input", input), ("output", output)))
        bad_activation = ArgumentTypeError(f"DNN: activation: expected a Module class such as hb.Sigmoid, "
                                           f"got {describe(activation)}")
        if not callable(activation) or isinstance(activation, Module):   # an instance is callable too
            raise bad_activation
        init = validate.choice("DNN", "init", init, ("notebook", "torch"))
        std = validate.number("DNN", "std", std, low=0)
        dtype = validate.float_dtype("DNN", "dtype", dtype)
        rng = init_rng("DNN", rng)           # a seed becomes one Generator for every layer
        try:
            probe = activation()
        except TypeError as e:                # np.tanh, or a class that needs arguments
            raise bad_activation from e
        if not isinstance(probe, Module):
            raise bad_activation
        sizes = [input] + [num_neuron] * (hidden_depth + 1) + [output]
        kw = dict(dtype=dtype, rng=rng, init="normal" if init == "notebook" else "torch", std=std)
        layers = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            layers += [Linear(i, o, **kw), activation()]
        super().__init__(*layers)
        self.config = dict(hidden_depth=hidden_depth, num_neuron=num_neuron, input=input, output=output,
                           activation=type(probe).__name__)
        if probe.config_args():       # a factory such as lambda: hb.LeakyReLU(0.2): its arguments too
            self.config["activation_args"] = probe.config_args()

    @classmethod
    def state_shapes(cls, hidden_depth, num_neuron, input, output, activation=Sigmoid, activation_args=None):
        """Each Linear's weight and bias, and whatever state the activation declares, named as in
        ``state_dict()`` (``"0.weight"``, ...); see ``Module.state_shapes``. The arguments are the
        DNN's ``config``, the activation given as its class. One layer at a time: a checkpoint that
        declares a huge depth is refused once it declares more arrays than its file holds."""
        for k in range(hidden_depth + 2):
            fan_in = input if k == 0 else num_neuron
            fan_out = output if k == hidden_depth + 1 else num_neuron
            for name, shape in Linear.state_shapes(fan_in, fan_out):
                yield f"{2 * k}.{name}", shape
            for name, shape in activation.state_shapes(**(activation_args or {})):
                yield f"{2 * k + 1}.{name}", shape

    @property
    def sequence(self):
        """The notebook's name for the list of layers."""
        return list(self)

    def calc_gradient(self, loss_obj):
        """The notebook's backward pass: dL/dpred from the loss, then back through every layer,
        accumulating into each parameter's ``.grad``. Returns dL/dx."""
        return self.backward(loss_obj.backward())


def gradient_descent(network, x, y, loss_obj, alpha=0.01):
    """One step of plain gradient descent, the notebook's function, fixed.

    Forward, loss, backward, then ``p ← p − alpha · dL/dp`` for every parameter, weights included
    (the notebook wrote ``l0.dw`` but updated with ``layer.dW``, which stayed zero, so its weights
    never moved). Returns the loss before the update, as a float.
    """
    alpha = validate.number("gradient_descent", "alpha", alpha, low=0)
    if not isinstance(network, Module):
        raise TypeError(f"gradient_descent: network: expected a handbp Module, got {describe(network)}")
    loss = loss_obj(network(x), y)    # forward first: bad x or y raise before anything changes
    network.zero_grad()
    if hasattr(network, "calc_gradient"):
        network.calc_gradient(loss_obj)
    else:
        network.backward(loss_obj.backward())
    for p in network.parameters():
        if p.grad is not None:
            p.data -= alpha * p.grad
    return loss
