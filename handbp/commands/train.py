"""Train a network on a built-in task (spirals, xor, sine) and report its loss and accuracy."""
import time

import numpy as np

ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU"}
# per task: (default epochs, batch size, lr, width, hidden depth)
DEFAULTS = {"spirals": (300, 32, 0.1, 64, 2), "xor": (100, 16, 0.1, 16, 1), "sine": (300, 32, 0.05, 32, 2)}


def add_arguments(parser):
    parser.add_argument("--task", choices=sorted(DEFAULTS), default="spirals", help="the task (default spirals)")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default: the task's)")
    parser.add_argument("--hidden-depth", type=int, default=None, help="hidden layers after the first")
    parser.add_argument("--width", type=int, default=None, help="neurons per hidden layer")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    parser.add_argument("--optimizer", default="sgd", help="sgd (default), or adam, adamw, rmsprop, adagrad "
                        "where handbp has them")
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--save", metavar="PATH", help="save the trained model (hb.save) to PATH")
    parser.add_argument("--quiet", action="store_true", help="print only the final line")


def _positive(name, value, integer=True):
    if value is None:
        return
    bad = (value < 1) if integer else (not np.isfinite(value) or value < 0)
    if bad:
        raise ValueError(f"--{name}: expected {'an integer ≥ 1' if integer else 'a finite number ≥ 0'}, got {value}")


def build(args, hb):
    """The model, loss and optimizer for ``args`` (defaults filled in from the task)."""
    epochs, batch, lr, width, depth = DEFAULTS[args.task]
    args.epochs = epochs if args.epochs is None else args.epochs
    args.batch_size = batch if args.batch_size is None else args.batch_size
    args.lr = lr if args.lr is None else args.lr
    args.width = width if args.width is None else args.width
    args.hidden_depth = depth if args.hidden_depth is None else args.hidden_depth
    for name in ("epochs", "batch_size", "width", "samples"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.hidden_depth < 0:
        raise ValueError(f"--hidden-depth: expected an integer ≥ 0, got {args.hidden_depth}")
    _positive("lr", args.lr, integer=False)
    _positive("momentum", args.momentum, integer=False)
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    regression = args.task == "sine"
    n_in, n_out = (1, 1) if regression else (2, 2)
    act = getattr(hb, ACTIVATIONS[args.activation])
    sizes = [n_in] + [args.width] * (args.hidden_depth + 1)
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [hb.Linear(i, o, rng=rng, dtype=dtype), act()]
    layers.append(hb.Linear(sizes[-1], n_out, rng=rng, dtype=dtype))
    model = hb.Sequential(*layers)
    loss = hb.MSELoss() if regression else hb.CrossEntropyLoss()
    name = args.optimizer.lower()
    classes = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
    if name not in classes or not hasattr(hb.optim, classes[name]):
        have = [k for k, v in classes.items() if hasattr(hb.optim, v)]
        raise ValueError(f"--optimizer: expected one of {have}, got {args.optimizer!r}")
    if name == "sgd":
        optimizer = hb.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    else:
        optimizer = getattr(hb.optim, classes[name])(model.parameters(), lr=args.lr)
    return model, loss, optimizer


def run(args):
    import handbp as hb
    model, loss, optimizer = build(args, hb)
    task = hb.datasets.TASKS[args.task]
    x, y = task(**({} if args.samples is None else {"n": args.samples}), rng=args.seed)
    x = x.astype(model.dtype)
    if args.task == "sine":
        y = y.astype(model.dtype)

    def report(epoch, value):
        if not args.quiet and (epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch:4d}  loss {value:.6f}")

    t = time.perf_counter()
    history = hb.fit(model, loss, optimizer, x, y, epochs=args.epochs, batch_size=args.batch_size,
                     rng=args.seed, callback=report)
    seconds = time.perf_counter() - t
    line = f"{args.task}: final loss {history[-1]:.6f}"
    if args.task != "sine":
        line += f", train accuracy {hb.accuracy(model, x, y):.1%}"
    print(f"{line} ({args.epochs} epochs, {seconds:.2f} s)")
    if args.save:
        hb.save(model, args.save, optimizer=optimizer)
        print(f"saved to {args.save}")
    return 0
