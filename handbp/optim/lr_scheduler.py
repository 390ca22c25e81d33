"""Learning-rate schedulers with torch's semantics: ``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``.

As in ``torch.optim.lr_scheduler``, a scheduler writes each group's ``"lr"`` in place; building it
records ``group["initial_lr"]`` (the base learning rate) and counts as step 0, so ``get_last_lr()``
right after construction is the optimizer's lr. Call ``scheduler.step()`` once per epoch, *after*
``optimizer.step()``. The updates are recursive (each lr is computed from the current one), as
torch's are, so a learning rate changed by hand between steps carries on from the new value.
"""
import math

from .. import validate
from ..errors import ArgumentTypeError, describe
from .optimizer import Optimizer


class LRScheduler:
    """Base class: holds ``optimizer``, ``base_lrs``, ``last_epoch`` and ``_last_lr`` (torch's
    attribute names, which ``state_dict()`` carries). Subclasses write ``get_lr()``."""

    _hyperparameters = ()
    _counts = ()          # the hyperparameters that are periods in epochs (whole numbers ≥ 1)

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise ArgumentTypeError(f"{name}: optimizer: expected a handbp optimizer, got {describe(optimizer)}")
        last_epoch = validate.integer(name, "last_epoch", last_epoch, low=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: param_groups[{i}] has no 'initial_lr', which resuming with "
                                   f"last_epoch={last_epoch} needs (load the optimizer's state first)")
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True                 # the constructor's step keeps the current lrs
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The learning rates for epoch ``last_epoch`` (already advanced by ``step``)."""
        raise NotImplementedError

    def get_last_lr(self):
        """The learning rates the last ``step()`` (or the constructor) set, one per param group."""
        return list(self._last_lr)

    def step(self):
        """Advance one epoch: ``last_epoch += 1`` and write the new lrs into the param groups."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Everything but the optimizer, under torch's names (hyperparameters, ``base_lrs``,
        ``last_epoch``, ``_step_count``, ``_last_lr``)."""
        return {key: (list(v) if isinstance(v, list) else v) for key, v in vars(self).items()
                if key not in ("optimizer", "_is_initial")}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``'s values; the keys must be this scheduler's, checked before any change."""
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"{name}.load_state_dict: expected a dict, got {describe(state_dict)}")
        expected = set(self.state_dict())
        if set(state_dict) != expected:
            raise KeyError(f"{name}.load_state_dict: expected keys {sorted(expected)}, got {sorted(state_dict)}")
        owner = f"{name}.load_state_dict"
        values = dict(state_dict)
        for key in ("base_lrs", "_last_lr"):
            lrs = values[key]
            if not isinstance(lrs, (list, tuple)):
                validate.fail(owner, key, "a list of learning rates (one per param group)", lrs, ArgumentTypeError)
            if len(lrs) != len(self.optimizer.param_groups):
                raise ValueError(f"{owner}: '{key}': expected {len(self.optimizer.param_groups)} "
                                 f"values (one per param group), got {len(lrs)}")
            values[key] = [validate.number(owner, f"{key}[{i}]", lr) for i, lr in enumerate(lrs)]
        # every value checked as the constructor checks it, before any is set: a wrong one would
        # otherwise surface epochs later, inside get_lr
        values["last_epoch"] = validate.integer(owner, "last_epoch", values["last_epoch"], low=-1)
        values["_step_count"] = validate.integer(owner, "_step_count", values["_step_count"], low=0)
        for key in self._hyperparameters:
            values[key] = self._check(owner, key, values[key])
        for key, value in values.items():
            setattr(self, key, value)

    @classmethod
    def _check(cls, owner, key, value):
        """Hyperparameter ``key`` checked as the constructor checks it: a whole number ≥ 1 if it is
        one of the class's ``_counts`` (a period in epochs), else a finite number."""
        if key in cls._counts:
            return validate.integer(owner, key, value, low=1)
        return validate.number(owner, key, value)

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyperparameters)
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """lr ← lr · gamma every ``step_size`` epochs: at epochs step_size, 2·step_size, …

    Closed form (without outside changes): lr = base_lr · gamma^⌊epoch / step_size⌋.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` this sets.
        step_size: period of the decay, a positive integer.
        gamma: multiplicative factor (default 0.1).
        last_epoch: index of the last epoch (-1, the default, starts afresh).
    """

    _hyperparameters = ("step_size", "gamma")
    _counts = ("step_size",)

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = self._check("StepLR", "step_size", step_size)
        self.gamma = self._check("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """lr ← lr · gamma every epoch.

    Closed form (without outside changes): lr = base_lr · gamma^epoch.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` this sets.
        gamma: multiplicative factor.
        last_epoch: index of the last epoch (-1, the default, starts afresh).
    """

    _hyperparameters = ("gamma",)

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = self._check("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from base_lr down to eta_min over T_max epochs (then back up, and so on).

    Closed form: lr_t = eta_min + ½ (base_lr − eta_min)(1 + cos(π t / T_max)). Like torch, the
    update is recursive, computed from the current lr::

        lr_t = eta_min + (lr_{t−1} − eta_min) · (1 + cos(π t / T_max)) / (1 + cos(π (t − 1) / T_max))

    except at t = T_max + 1, 3 T_max + 1, … (just past the minimum, where the ratio is 0/0), where
    lr_t = lr_{t−1} + (base_lr − eta_min)(1 − cos(π / T_max)) / 2.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` this sets.
        T_max: half period, in epochs (a positive integer).
        eta_min: the minimum learning rate (default 0).
        last_epoch: index of the last epoch (-1, the default, starts afresh).
    """

    _hyperparameters = ("T_max", "eta_min")
    _counts = ("T_max",)

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = self._check("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = self._check("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t, T, lo = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [group["lr"] for group in groups]
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (group["lr"] - lo) + lo
                for group in groups]
