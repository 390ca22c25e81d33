"""``handbp train --task digits``: a small CNN on scikit-learn's 8 × 8 digits, against an MLP on the
same split. The CNN is conv → ReLU → pool → conv → ReLU → pool → linear; the MLP is
``--hidden-depth`` + 1 hidden layers of ``--width`` with ``--activation``. Both train with the same
optimizer settings, epochs and batches, and are scored on the held-out test images."""
import time

import numpy as np

TEST_FRACTION = 0.2
DEFAULT_SAVE = "handbp-digits.npz"


def cnn(hb, rng, dtype):
    """Conv2d(1→16, 3×3, padding 1) → ReLU → MaxPool2d(2) → Conv2d(16→32, 3×3, padding 1) → ReLU →
    MaxPool2d(2) → Flatten → Linear(32·2·2 → 10): 8×8 → 4×4 → 2×2."""
    return hb.Sequential(hb.Conv2d(1, 16, 3, padding=1, rng=rng, dtype=dtype), hb.ReLU(), hb.MaxPool2d(2),
                         hb.Conv2d(16, 32, 3, padding=1, rng=rng, dtype=dtype), hb.ReLU(), hb.MaxPool2d(2),
                         hb.Flatten(), hb.Linear(32 * 2 * 2, 10, rng=rng, dtype=dtype))


def mlp(hb, args, rng, dtype, activation):
    sizes = [64] + [args.width] * (args.hidden_depth + 1)
    layers = [hb.Flatten()]
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [hb.Linear(i, o, rng=rng, dtype=dtype), activation()]
    return hb.Sequential(*layers, hb.Linear(sizes[-1], 10, rng=rng, dtype=dtype))


def describe(model):
    parts = []
    for m in model:
        name = type(m).__name__
        if hasattr(m, "in_channels"):
            name += f"({m.in_channels}→{m.out_channels})"
        elif hasattr(m, "in_features"):
            name += f"({m.in_features}→{m.out_features})"
        parts.append(name)
    return " → ".join(parts)


def one_thread():
    """BLAS threads limited to one for the training, where threadpoolctl is there (scikit-learn
    needs it): the products here are small, and threads on them cost more than they save."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1)


def train(hb, model, optimizer_for, args, x, y):
    """fit (tqdm bar on a terminal), and the seconds it took."""
    loss = hb.CrossEntropyLoss()
    optimizer = optimizer_for(model)

    def report(epoch, value):
        if not args.quiet and (epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs - 1):
            print(f"  epoch {epoch:4d}  loss {value:.6f}")

    t = time.perf_counter()
    hb.fit(model, loss, optimizer, x, y, epochs=args.epochs, batch_size=args.batch_size, rng=args.seed,
           callback=report)
    return optimizer, time.perf_counter() - t


def misclassified_png(path, x, y, predicted, count=12):
    """A row of up to ``count`` misclassified test images, each titled "label → predicted"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    wrong = np.flatnonzero(predicted != y)[:count]
    fig, axes = plt.subplots(1, max(len(wrong), 1), figsize=(1.3 * max(len(wrong), 1), 1.7), squeeze=False)
    for ax, i in zip(axes[0], wrong):
        ax.imshow(x[i, 0], cmap="gray_r")
        ax.set_title(f"{y[i]} → {predicted[i]}", fontsize=9)
    for ax in axes[0]:
        ax.axis("off")
    if not len(wrong):
        axes[0][0].text(0.5, 0.5, "no test image\nmisclassified", ha="center", va="center")
    fig.suptitle("misclassified test digits (label → CNN's answer)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(wrong)


def run(args, hb, optimizer_for, activation):
    """The digits task, for checked ``args``; ``optimizer_for(model)`` builds the optimizer the
    command line asked for, ``activation`` the MLP's activation class."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError('--plot: needs matplotlib: pip install "handbp[plot]"') from None
    dtype = np.dtype(args.dtype)
    try:
        x_train, y_train, x_test, y_test = hb.datasets.digits(TEST_FRACTION, rng=args.seed)
    except ImportError as e:                  # the CLI's one clear line, with the install hint
        raise ValueError(f"--task digits: {e}") from None
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    say = (lambda *a: None) if args.quiet else print
    say(f"digits: {len(x_train)} training and {len(x_test)} test images (8×8, scikit-learn's, standardized), "
        f"seed {args.seed}, {dtype}")
    limits = one_thread()
    try:
        rng = np.random.default_rng(args.seed)
        model = cnn(hb, rng, dtype)
        n_params = sum(p.data.size for p in model.parameters())
        say(f"CNN: {describe(model)}, {n_params:,} parameters")
        optimizer, seconds = train(hb, model, optimizer_for, args, x_train, y_train)
        model.eval()
        predicted = model(x_test).argmax(axis=1)
        test_acc = float(np.mean(predicted == y_test))
        print(f"CNN: test accuracy {test_acc:.1%} ({int((predicted == y_test).sum())} of {len(y_test)}), train "
              f"accuracy {hb.accuracy(model, x_train, y_train):.1%}, {args.epochs} epochs, {seconds:.2f} s")
        baseline = mlp(hb, args, np.random.default_rng(args.seed), dtype, activation)
        _, mlp_seconds = train(hb, baseline, optimizer_for, args, x_train, y_train)
        print(f"MLP: {describe(baseline)}, same split and training: test accuracy "
              f"{hb.accuracy(baseline, x_test, y_test):.1%}, {mlp_seconds:.2f} s")
    finally:
        if limits is not None:
            limits.restore_original_limits()
    path = args.save or DEFAULT_SAVE
    hb.save(model, path, optimizer=optimizer)
    print(f"saved the CNN to {path}")
    if args.plot:
        shown = misclassified_png(args.plot, x_test, y_test, predicted)
        print(f"wrote {shown} misclassified test digits to {args.plot}")
    return 0
