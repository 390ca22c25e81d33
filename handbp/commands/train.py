"""Train a network on a built-in task (spirals, xor, sine, digits, chars, add) and report how well it did.

digits trains a small CNN and an MLP on scikit-learn's 8 × 8 digits and reports their held-out
test accuracy (``handbp.commands.digits``). The other classification tasks (spirals, xor) end in 2
logits under CrossEntropyLoss and report the train accuracy; sine ends in one linear (identity)
output under MSELoss and reports the train MSE. The final figures are those of the trained model on
the whole training set. The sequence tasks (chars: a character-level language model of the
project's Korean guide; add: adding numbers digit by digit) train a recurrent network
(``handbp.sequence_tasks``) and report held-out figures.
"""
import inspect
import os
import re
import sys
import time

import numpy as np

import handbp as hb

# per task: (default epochs, batch size, SGD lr, width, hidden depth); each reaches 100% train
# accuracy (spirals, xor) or the noise floor (sine) in about a second with SGD and momentum 0.9
DEFAULTS = {"spirals": (300, 32, 0.1, 64, 2), "xor": (100, 16, 0.1, 16, 1), "sine": (300, 32, 0.05, 32, 2),
            "digits": (20, 32, 0.05, 64, 0)}     # digits: a CNN (handbp.commands.digits); width, depth: its MLP
SGD_MOMENTUM = 0.9
# the sequence tasks (handbp.sequence_tasks): (epochs, batch size, Adam's lr, hidden size, embedding
# size, length: characters per training sequence, or digits per number); they train with Adam
SEQUENCE_DEFAULTS = {"chars": (20, 16, 0.01, 64, 32, 50), "add": (10, 32, 0.02, 32, 16, 8)}


def choice_name(cls):
    """A class's name as a command-line choice: LeakyReLU → leaky_relu, RMSprop → rmsprop."""
    return re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", "_", cls.__name__).lower()


def _public(namespace, base):
    """The classes a namespace exports (its ``__all__``) that derive from ``base``, base excluded."""
    return [obj for obj in (getattr(namespace, name) for name in namespace.__all__)
            if isinstance(obj, type) and issubclass(obj, base) and obj is not base]


def activation_choices():
    """choice → class for handbp's public element-wise modules (the class fact
    ``Module.elementwise``): a new activation is a choice as soon as handbp exports it."""
    return {choice_name(c): c for c in _public(hb, hb.Module) if c.elementwise}


def optimizer_choices():
    """choice → class for handbp's public optimizers (``hb.optim``)."""
    return {choice_name(c): c for c in _public(hb.optim, hb.optim.Optimizer)}


def _defaults(cls):
    """An optimizer's own default hyperparameters (its signature's, torch's)."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def add_arguments(parser):
    optimizers = optimizer_choices()
    momentum = [name for name, cls in optimizers.items() if "momentum" in _defaults(cls)]
    parser.add_argument("--task", choices=sorted(DEFAULTS) + sorted(SEQUENCE_DEFAULTS), default="spirals",
                        help="the task (default spirals)")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default: the task's)")
    parser.add_argument("--hidden-depth", type=int, default=None,
                        help="hidden layers after the first (default: the task's)")
    parser.add_argument("--width", type=int, default=None, help="neurons per hidden layer (default: the task's)")
    parser.add_argument("--activation", choices=sorted(activation_choices()), default="tanh", help="(default tanh)")
    parser.add_argument("--optimizer", default=None,
                        help=f"one of {', '.join(optimizers)} (default sgd; adam for chars and add)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the task's for sgd, the optimizer's own default for the others)")
    parser.add_argument("--momentum", type=float, default=None,
                        help=f"momentum, for {', '.join(momentum)} (default {SGD_MOMENTUM} for sgd, else the "
                             f"optimizer's own)")
    parser.add_argument("--epochs", type=int, default=None, help="(default: the task's)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: the task's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data, the weights and the shuffling (default 0)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--save", metavar="PATH", help="save the trained model and optimizer (hb.save) to PATH")
    parser.add_argument("--quiet", action="store_true", help="print only the final line")
    parser.add_argument("--plot", metavar="PATH", help="digits: write a PNG of misclassified test images to PATH")
    sequences = parser.add_argument_group("sequence tasks (chars, add)")
    sequences.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm", help="the recurrent layer "
                           "(default lstm); --width is its hidden size, --hidden-depth its layers after the first")
    sequences.add_argument("--length", type=int, default=None, help="characters per training sequence (chars), or "
                           "digits per number (add)")
    sequences.add_argument("--embedding", type=int, default=None, help="embedding size (default: the task's)")
    sequences.add_argument("--dropout", type=float, default=0.0, help="dropout between recurrent layers (default 0)")
    sequences.add_argument("--clip", type=float, default=1.0, help="clip the gradient's norm to this before each "
                           "step (hb.nn.utils.clip_grad_norm_; 0: no clipping; default 1)")
    sequences.add_argument("--corpus", metavar="PATH", default=None, help="the text of chars (default: the "
                           "project's docs/teaching.ko.md in a source checkout; in an installed package, "
                           "which has no docs, the docstrings of handbp's modules)")


def _positive(name, value, integer=True):
    if value is None:
        return
    bad = (value < 1) if integer else (not np.isfinite(value) or value < 0)
    if bad:
        raise ValueError(f"--{name}: expected {'an integer ≥ 1' if integer else 'a finite number ≥ 0'}, got {value}")


def check(args):
    """Fill the task's defaults into ``args`` and check every value, before anything is built."""
    if args.task in SEQUENCE_DEFAULTS:
        epochs, batch, lr, width, embedding, length = SEQUENCE_DEFAULTS[args.task]
        depth = 0
        args.optimizer = args.optimizer or "adam"
        args.embedding = embedding if args.embedding is None else args.embedding
        args.length = length if args.length is None else args.length
        for key in ("embedding", "length"):
            _positive(key, getattr(args, key))
        if not 0 <= args.dropout <= 1:
            raise ValueError(f"--dropout: expected a probability in [0, 1], got {args.dropout}")
        _positive("clip", args.clip, integer=False)
    else:
        epochs, batch, lr, width, depth = DEFAULTS[args.task]
    args.optimizer = args.optimizer or "sgd"
    optimizers = optimizer_choices()
    name = args.optimizer.lower()
    if name not in optimizers:
        raise ValueError(f"--optimizer: expected one of {sorted(optimizers)}, got {args.optimizer!r}")
    args.optimizer = name
    cls, own = optimizers[name], _defaults(optimizers[name])
    if args.momentum is not None and "momentum" not in own:
        takes = [n for n, c in optimizers.items() if "momentum" in _defaults(c)]
        raise ValueError(f"--momentum: only {' and '.join(takes)} take a momentum, not {name}")
    args.epochs = epochs if args.epochs is None else args.epochs
    args.batch_size = batch if args.batch_size is None else args.batch_size
    if args.lr is None:       # the task's own lr is tuned for SGD (Adam for the sequence tasks)
        tuned = hb.optim.Adam if args.task in SEQUENCE_DEFAULTS else hb.optim.SGD
        args.lr = lr if cls is tuned else own["lr"]
    if args.momentum is None and "momentum" in own:
        args.momentum = SGD_MOMENTUM if cls is hb.optim.SGD else own["momentum"]
    args.width = width if args.width is None else args.width
    args.hidden_depth = depth if args.hidden_depth is None else args.hidden_depth
    for key in ("epochs", "batch_size", "width", "samples"):
        _positive(key.replace("_", "-"), getattr(args, key))
    if args.task == "digits" and args.samples is not None:
        raise ValueError(f"--samples: the digits task has scikit-learn's 1,797 images, got {args.samples}")
    if args.hidden_depth < 0:
        raise ValueError(f"--hidden-depth: expected an integer ≥ 0, got {args.hidden_depth}")
    _positive("lr", args.lr, integer=False)
    if args.momentum is not None:
        _positive("momentum", args.momentum, integer=False)
    if args.save:
        folder = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(folder):             # say so now, not after the training
            raise ValueError(f"--save: expected a path in an existing folder, got {args.save!r} "
                             f"({folder} does not exist)")
    if args.plot and args.task != "digits":
        raise ValueError(f"--plot: only the digits task draws its misclassified images, got --task {args.task}")
    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise ValueError(f"--plot: expected a path in an existing folder, got {args.plot!r}")


def build(args):
    """The model, loss and optimizer for checked ``args``."""
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    regression = args.task == "sine"
    n_in, n_out = (1, 1) if regression else (2, 2)
    act = activation_choices()[args.activation]
    sizes = [n_in] + [args.width] * (args.hidden_depth + 1)
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [hb.Linear(i, o, rng=rng, dtype=dtype), act()]
    layers.append(hb.Linear(sizes[-1], n_out, rng=rng, dtype=dtype))    # identity output: logits or values
    model = hb.Sequential(*layers)
    loss = hb.MSELoss() if regression else hb.CrossEntropyLoss()
    return model, loss, build_optimizer(args, model.parameters())


def build_optimizer(args, parameters):
    """The optimizer ``--optimizer``, ``--lr`` and ``--momentum`` ask for, over ``parameters``."""
    kwargs = {"lr": args.lr}
    if args.momentum is not None:
        kwargs["momentum"] = args.momentum
    return optimizer_choices()[args.optimizer](parameters, **kwargs)


def data(args, dtype):
    """The task's (x, y), x in the model's dtype (y too for sine; class indices stay integers)."""
    try:
        x, y = hb.datasets.TASKS[args.task](**({} if args.samples is None else {"n": args.samples}), rng=args.seed)
    except ValueError as e:
        raise ValueError(f"--samples: {e}") from None
    return x.astype(dtype), (y.astype(dtype) if args.task == "sine" else y)


def run_sequences(args):
    """chars and add: a recurrent model trained with gradient clipping (handbp.sequence_tasks)."""
    from .. import sequence_tasks

    def report(epoch, value):
        if not args.quiet and (epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch:4d}  loss {value:.6f}")

    task = sequence_tasks.run_chars if args.task == "chars" else sequence_tasks.run_add
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            model, optimizer, lines = task(args, lambda model: build_optimizer(args, model.parameters()), report)
    except FloatingPointError as e:
        print(f"handbp train: training diverged: {e} (--lr is {args.lr})", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if args.save:
        hb.save(model, args.save, optimizer=optimizer)
        print(f"saved to {args.save}")
    return 0


def run(args):
    check(args)
    if args.task in SEQUENCE_DEFAULTS:
        return run_sequences(args)
    if args.task == "digits":
        from . import digits
        return digits.run(args, hb, lambda model: build_optimizer(args, model.parameters()),
                          activation_choices()[args.activation])
    model, loss, optimizer = build(args)
    x, y = data(args, model.dtype)

    def report(epoch, value):
        if not args.quiet and (epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch:4d}  loss {value:.6f}")

    t = time.perf_counter()
    try:
        # overflow is caught by fit as a non-finite loss and reported below, in one line
        with np.errstate(over="ignore", invalid="ignore"):
            hb.fit(model, loss, optimizer, x, y, epochs=args.epochs, batch_size=args.batch_size,
                   rng=args.seed, callback=report)
    except hb.TrainingDiverged as e:
        print(f"handbp train: training diverged: {e} (--lr is {args.lr})", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t
    final = loss(model(x), y)                  # the trained model on the whole training set
    if args.task == "sine":
        line = f"final loss (MSE) {final:.6f}"
    else:
        line = f"final loss (cross-entropy) {final:.6f}, train accuracy {hb.accuracy(model, x, y):.1%}"
    print(f"{args.task}: {line} ({args.epochs} epochs, {seconds:.2f} s)")
    if args.save:
        hb.save(model, args.save, optimizer=optimizer)
        print(f"saved to {args.save}")
    return 0
