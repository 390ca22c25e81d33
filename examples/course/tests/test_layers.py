"""The course's graded tests, 20 points: each of the student's layers in a small network,
cross-checked against its torch twin at every training step."""
import numpy as np
import pytest

import handbp as hb


def sgd(model):
    return hb.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def one_hot_batches(rng, n_in, classes, steps=3, batch=4):
    """Batches for a cross-entropy on class probabilities (one-hot rows)."""
    eye = np.eye(classes)
    return [(rng.normal(size=(batch, n_in)), eye[rng.integers(0, classes, batch)]) for _ in range(steps)]


@pytest.mark.points(4, partial=True, problem="linear", own_code="Linear")
def test_linear(student, crosscheck, rng):
    model = hb.Sequential(student.Linear(3, 5, rng=rng), hb.Tanh(), hb.Linear(5, 2, rng=rng))
    crosscheck.lockstep(model, hb.MSELoss(), sgd(model))


@pytest.mark.points(2, problem="sigmoid", own_code="Sigmoid")
def test_sigmoid(student, crosscheck, rng):
    model = hb.Sequential(hb.Linear(3, 5, rng=rng), student.Sigmoid(), hb.Linear(5, 2, rng=rng))
    crosscheck.lockstep(model, hb.MSELoss(), sgd(model))


@pytest.mark.points(2, problem="relu", own_code="ReLU")
def test_relu(student, crosscheck, rng):
    model = hb.Sequential(hb.Linear(3, 5, rng=rng), student.ReLU(), hb.Linear(5, 2, rng=rng))
    crosscheck.lockstep(model, hb.MSELoss(), sgd(model))


@pytest.mark.points(3, partial=True, problem="silu", own_code="SiLU")
def test_silu(student, crosscheck, rng):
    model = hb.Sequential(hb.Linear(3, 5, rng=rng), student.SiLU(), hb.Linear(5, 2, rng=rng))
    crosscheck.lockstep(model, hb.MSELoss(), sgd(model))


@pytest.mark.points(3, partial=True, problem="cross_entropy", own_code="SoftmaxCrossEntropy")
def test_cross_entropy(student, crosscheck, rng):
    model = hb.Sequential(hb.Linear(4, 3, rng=rng))
    crosscheck.lockstep(model, student.SoftmaxCrossEntropy(), sgd(model), one_hot_batches(rng, 4, 3))


@pytest.mark.points(2, problem="mse", own_code="MSE")
def test_mse(student, crosscheck, rng):
    model = hb.Sequential(hb.Linear(3, 4, rng=rng), hb.Tanh(), hb.Linear(4, 2, rng=rng))
    crosscheck.lockstep(model, student.MSE(), sgd(model))


@pytest.mark.points(2, visibility="hidden", problem="network",
                   own_code=["Linear", "SiLU", "ReLU", "SoftmaxCrossEntropy"])
def test_network(student, crosscheck, rng):
    model = hb.Sequential(student.Linear(4, 6, rng=rng), student.SiLU(), student.Linear(6, 6, rng=rng),
                          student.ReLU(), student.Linear(6, 3, rng=rng))
    crosscheck.lockstep(model, student.SoftmaxCrossEntropy(), sgd(model), one_hot_batches(rng, 4, 3))


@pytest.mark.points(2, visibility="after_published", problem="network",
                   own_code=["Linear", "Sigmoid", "MSE"])
def test_network_adam(student, crosscheck, rng):
    model = hb.Sequential(student.Linear(3, 8, rng=rng), student.Sigmoid(), student.Linear(8, 1, rng=rng))
    crosscheck.lockstep(model, student.MSE(), hb.optim.Adam(model.parameters(), lr=0.01))
