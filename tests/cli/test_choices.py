"""The command line's choices come from the classes: --activation offers handbp's public
element-wise modules (``Module.elementwise``), --optimizer hb.optim's public optimizers, each with
its own default learning rate (the task's for SGD) and, where it takes one, momentum."""
import argparse

import pytest

import handbp as hb
from handbp.cli import main
from handbp.commands import explain, train


def elementwise_public_classes():
    return {c for c in (getattr(hb, n) for n in hb.__all__)
            if isinstance(c, type) and issubclass(c, hb.Module) and c.elementwise}


def test_activation_choices_are_the_elementwise_classes():
    choices = train.activation_choices()
    assert set(choices.values()) == elementwise_public_classes()
    assert {"sigmoid", "tanh", "relu", "leaky_relu", "identity", "gelu", "elu", "silu", "softplus",
            "hardtanh"} <= set(choices)
    assert all(train.choice_name(c) == name for name, c in choices.items())
    assert explain.ACTIVATIONS == choices


@pytest.mark.parametrize("name, choice", [("LeakyReLU", "leaky_relu"), ("ReLU", "relu"), ("SiLU", "silu"),
                                          ("GELU", "gelu"), ("Hardtanh", "hardtanh"), ("RMSprop", "rmsprop"),
                                          ("AdamW", "adamw"), ("BatchNorm1d", "batch_norm1d")])
def test_choice_names_are_snake_case(name, choice):
    assert train.choice_name(type(name, (), {})) == choice


def test_optimizer_choices_are_hb_optims_classes():
    choices = train.optimizer_choices()
    public = {c for c in (getattr(hb.optim, n) for n in hb.optim.__all__)
              if isinstance(c, type) and issubclass(c, hb.optim.Optimizer) and c is not hb.optim.Optimizer}
    assert set(choices.values()) == public and {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= set(choices)


@pytest.mark.parametrize("activation", sorted(train.activation_choices()))
def test_every_activation_trains_and_explains(activation, capsys):
    assert main(["train", "--task", "xor", "--epochs", "3", "--activation", activation, "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("xor: final loss")
    assert main(["explain", "--activation", activation, "--no-torch"]) == 0
    assert type(hb.DNN(0, 2, 3, 2, activation=train.activation_choices()[activation])[1]).__name__ \
        in capsys.readouterr().out


def parsed(*argv):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(list(argv))
    train.check(args)
    return args


@pytest.mark.parametrize("name", sorted(train.optimizer_choices()))
def test_each_optimizer_gets_its_own_defaults(name):
    """lr: the optimizer's own default (torch's), the task's tuned one for SGD; momentum where the
    optimizer takes one: SGD's 0.9 (the tasks' tuning), the optimizer's own otherwise."""
    cls = train.optimizer_choices()[name]
    args = parsed("--task", "xor", "--optimizer", name)
    own = train._defaults(cls)
    assert args.lr == (train.DEFAULTS["xor"][2] if cls is hb.optim.SGD else own["lr"])
    assert args.momentum == (None if "momentum" not in own else 0.9 if cls is hb.optim.SGD else own["momentum"])
    _, _, optimizer = train.build(args)
    assert type(optimizer) is cls and optimizer.defaults["lr"] == args.lr
