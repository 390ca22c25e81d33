"""The seed notebook's experiment, cross-checked: handbp and its PyTorch twin trained side by side.

The notebook's test cell: np.random.seed, x ~ N(0, 1) of shape (10,), y ~ N(0, 1) of shape (2,),
DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=Sigmoid), MeanSquaredError, 100
epochs of gradient descent with alpha = 0.01. Per epoch: handbp's loss, torch's loss, and the
worst difference over every compared quantity; then a one-line verdict and the elapsed times.
"""
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100, as the notebook)")
    parser.add_argument("--alpha", type=float, default=0.01, help="learning rate (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="np.random.seed for data and weights (default 0)")
    parser.add_argument("--no-torch", action="store_true", help="handbp alone, as the notebook ran")


def notebook_experiment(seed=0, epochs=100, alpha=0.01):
    """The notebook's cell on handbp: returns (network, loss_obj, x, y, losses, seconds)."""
    import handbp as hb
    np.random.seed(seed)
    x = np.random.normal(0.0, 1.0, (10,))
    y = np.random.normal(0.0, 1.0, (2,))
    t = time.perf_counter()
    dnn = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid)
    loss_obj = hb.MeanSquaredError()
    losses = [hb.gradient_descent(dnn, x, y, loss_obj, alpha=alpha) for _ in range(epochs)]
    return dnn, loss_obj, x, y, losses, time.perf_counter() - t


def _check(args):
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected an integer ≥ 1, got {args.epochs}")
    if not np.isfinite(args.alpha) or args.alpha < 0:
        raise ValueError(f"--alpha: expected a finite learning rate ≥ 0, got {args.alpha}")


def run(args):
    _check(args)
    import handbp as hb
    _, _, _, _, losses, seconds = notebook_experiment(args.seed, args.epochs, args.alpha)
    if args.no_torch:
        for epoch, loss in enumerate(losses):
            print(f"Epoch {epoch}: Test loss {loss}")
        print(f"{seconds:.3f} seconds elapsed.")
        return 0
    try:
        import crosscheck as cc
        import torch
    except ImportError as e:
        print(f"the cross-check needs crosscheck and torch ({e}); showing handbp alone. "
              "Install torch with: pip install \"handbp[torch]\"")
        args.no_torch = True
        return run(args)
    # the same cell again, this time in lockstep with the torch twin
    np.random.seed(args.seed)
    x = np.random.normal(0.0, 1.0, (10,))
    y = np.random.normal(0.0, 1.0, (2,))
    dnn = hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid)
    start = {k: v.copy() for k, v in dnn.state_dict().items()}
    optimizer = hb.optim.SGD(dnn.parameters(), lr=args.alpha)       # p ← p − alpha · grad, as gradient_descent
    t = time.perf_counter()
    trace = cc.lockstep(dnn, hb.MeanSquaredError(), optimizer, [(x, y)] * args.epochs)
    lockstep_seconds = time.perf_counter() - t
    # torch alone, for the timing line
    twin = cc.mirror(hb.DNN(hidden_depth=5, num_neuron=32, input=10, output=2, activation=hb.Sigmoid))
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(torch.from_numpy(start[name]))
    topt = torch.optim.SGD(twin.parameters(), lr=args.alpha)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t = time.perf_counter()
    for _ in range(args.epochs):
        topt.zero_grad()
        loss = 0.5 * torch.mean((twin(xt) - yt) ** 2)
        loss.backward()
        topt.step()
    torch_seconds = time.perf_counter() - t
    print(f"{'epoch':>5}  {'handbp loss':>20}  {'torch loss':>20}  {'worst difference':>16}")
    worst_all = 0.0
    for epoch, (mine, theirs, step) in enumerate(zip(trace.losses, trace.torch_losses, trace.steps)):
        worst = max(r["max_rel"] for r in step.values())
        worst_all = max(worst_all, worst)
        print(f"{epoch:>5}  {mine:>20.17g}  {theirs:>20.17g}  {worst:>16.3g}")
    moved = all(not np.array_equal(start[k], v) for k, v in dnn.state_dict().items() if k.endswith("weight"))
    n_q = len(trace.steps[0])
    print(f"verdict: all {len(trace)} steps matched the torch twin ({n_q} quantities each: outputs, loss, "
          f"gradients, updated parameters); worst difference {worst_all:.3g} of a quantity's largest magnitude; "
          f"loss {trace.losses[0]:.6g} → {trace.losses[-1]:.6g}; every weight moved: {moved}")
    print(f"elapsed: handbp {seconds:.3f} s (the notebook's loop), torch {torch_seconds:.3f} s, "
          f"lockstep (both, compared) {lockstep_seconds:.3f} s")
    return 0
