"""Explain one training step, module by module: forward, loss, backward and update, beside the torch
twin's values (crosscheck.explain) when torch is installed, handbp's alone (hb.explain) otherwise."""

import os

import numpy as np

from . import have_torch
from .train import activation_choices

ACTIVATIONS = activation_choices()          # handbp's public element-wise modules, by choice name


def add_arguments(parser):
    parser.add_argument("--checkpoint", metavar="PATH", help="explain a model saved with hb.save (default: the "
                        "notebook's network, small)")
    parser.add_argument("--hidden-depth", type=int, default=1, help="hidden layers of the notebook network (default 1)")
    parser.add_argument("--width", type=int, default=4, help="width of the notebook network (default 4)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="sigmoid")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--batch", type=int, default=0, help="samples per step; 0 (default) is one unbatched "
                        "sample, as in the notebook")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of the update (default 0.01, the "
                        "notebook's alpha)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numbers", type=int, default=4, help="numbers shown per array row (default 4)")
    parser.add_argument("--columns", type=int, default=80, help="the longest line (default 80)")
    parser.add_argument("--lang", choices=("en", "ko"), default="en", help="language of the hints (default en)")
    parser.add_argument("--png", metavar="FILE", help="also draw the network as a computational graph (shapes, "
                        "gradient norms) into FILE (needs matplotlib: pip install \"handbp[plot]\")")
    parser.add_argument("--no-torch", action="store_true", help="handbp's values only, without the torch twin")


def run(args):
    import handbp as hb
    from handbp.explain import MIN_WIDTH
    for name, value, low in (("--batch", args.batch, 0), ("--numbers", args.numbers, 1),
                             ("--columns", args.columns, MIN_WIDTH),
                             ("--hidden-depth", args.hidden_depth, 0), ("--width", args.width, 1)):
        if value < low:
            raise ValueError(f"{name}: expected an integer ≥ {low}, got {value}")
    if args.png:      # checked before the step is explained, not after (a traceback below the output)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError('--png: needs matplotlib: pip install "handbp[plot]"') from None
    if not args.lr >= 0:
        raise ValueError(f"--lr: expected a number ≥ 0, got {args.lr}")
    rng = np.random.default_rng(args.seed)
    dtype = np.dtype(args.dtype)
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise FileNotFoundError(f"--checkpoint: no such file: {args.checkpoint!r}")
        model = hb.load(args.checkpoint)
    else:
        model = hb.DNN(args.hidden_depth, args.width, 3, 2, activation=ACTIVATIONS[args.activation],
                       init="torch", rng=rng, dtype=dtype)
    first = next((m for _, m in model.named_modules() if isinstance(m, hb.Linear)), None)
    if first is None:
        raise ValueError("--checkpoint: the model has no Linear layer to size the input from")
    shape = (first.in_features,) if args.batch == 0 else (args.batch, first.in_features)
    x = rng.normal(size=shape).astype(model.dtype)
    out = model(x)
    y = rng.normal(size=out.shape).astype(model.dtype)
    loss = hb.MeanSquaredError()
    kw = dict(lr=args.lr, numbers=args.numbers, width=args.columns)
    if args.no_torch:
        print("(--no-torch: handbp's values only)")
        print(hb.explain(model, loss, x, y, **kw))
    elif have_torch("explain"):     # without torch: the install hint on stderr, then handbp's values
        import crosscheck
        print(crosscheck.explain(model, loss, x, y, lang=args.lang, **kw))
    else:
        print(hb.explain(model, loss, x, y, **kw))
    if args.png:
        hb.draw(model, x, y, loss, path=args.png)
        print(f"the graph: {args.png}")
    return 0
