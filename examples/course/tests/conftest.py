"""The course's fixture: the student's module (``submission``, given with
``--crosscheck-submission``), with the torch twin of each of their classes registered."""
import pytest

import crosscheck as cc


def twins(torch):
    """Each student class -> its torch twin (structure and dtype; crosscheck copies the weights in)."""
    return {
        "Linear": lambda m, child: torch.nn.Linear(m.in_features, m.out_features, dtype=torch.float64),
        "Sigmoid": lambda m, child: torch.nn.Sigmoid(),
        "ReLU": lambda m, child: torch.nn.ReLU(),
        "SiLU": lambda m, child: torch.nn.SiLU(),
        "SoftmaxCrossEntropy": lambda m, child: torch.nn.CrossEntropyLoss(),
        "MSE": lambda m, child: torch.nn.MSELoss(),
    }


@pytest.fixture
def student(submission):
    import torch        # here rather than at the top: pytest-xdist's controller, which runs no test, never needs it
    for name, twin in twins(torch).items():
        cls = getattr(submission, name, None)      # a class left out fails only the tests that use it
        if isinstance(cls, type):
            cc.register(cls, twin)
    return submission
