"""Explain one training step's backward pass, module by module, beside the torch twin's values."""
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
    parser.add_argument("--batch", type=int, default=0, help="samples per step; 0 (default) is one unbatched "
                        "sample, as in the notebook")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numbers", type=int, default=4, help="numbers shown per array (default 4)")
    parser.add_argument("--no-torch", action="store_true", help="handbp's values only, without the torch twin")


def run(args):
    import handbp as hb
    if args.batch < 0:
        raise ValueError(f"--batch: expected an integer ≥ 0, got {args.batch}")
    if args.numbers < 1:
        raise ValueError(f"--numbers: expected an integer ≥ 1, got {args.numbers}")
    rng = np.random.default_rng(args.seed)
    if args.checkpoint:
        model = hb.load(args.checkpoint)
    else:
        model = hb.DNN(args.hidden_depth, args.width, 3, 2, activation=ACTIVATIONS[args.activation],
                       init="torch", rng=rng)
    first = next((m for _, m in model.named_modules() if isinstance(m, hb.Linear)), None)
    if first is None:
        raise ValueError("--checkpoint: the model has no Linear layer to size the input from")
    shape = (first.in_features,) if args.batch == 0 else (args.batch, first.in_features)
    x = rng.normal(size=shape).astype(model.dtype)
    out = model(x)
    y = rng.normal(size=out.shape).astype(model.dtype)
    use_torch = not args.no_torch and have_torch("explain")      # without torch: the hint, then handbp's values
    print(hb.explain(model, hb.MeanSquaredError(), x, y, torch="auto" if use_torch else False, numbers=args.numbers))
    return 0
