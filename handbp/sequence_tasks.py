"""Two sequence tasks for the recurrent layers, from data the project ships or generates:
``handbp train --task chars`` and ``handbp train --task add``.

* ``chars``: a character-level language model of a text (by default the project's own Korean
  guide, ``docs/teaching.ko.md``, or in an installed wheel, which has no docs, the docstrings of
  handbp's modules): predict each next character. Trained on the first 90% of the
  text, validated on the rest; the measure is bits per character, beside what a model that knows
  only each character's frequency (a unigram model) gets on the same validation text.
* ``add``: adding two numbers given digit by digit, the least significant first: at step t the
  input is the pair of t-th digits (one token of 100) and the target the t-th digit of the sum.
  The answer is known exactly, and it needs a carry kept across steps, which a model without
  memory cannot do; a recurrent model that learned the rule also adds numbers longer than any it
  was trained on.

Both use the model a torch user writes for this: ``Embedding → LSTM (or GRU, RNN) → the output
(SelectOutput) → every step a row (Flatten(0, 1)) → Linear``, cross-entropy over every step,
and gradient clipping (``hb.nn.utils.clip_grad_norm_``) before each optimizer step, as torch's
word-language-model example does.
"""
import importlib
import inspect
import os
import pkgutil
import time

import numpy as np

from . import validate
from .embedding import Embedding
from .flatten import Flatten
from .layers import Linear
from .losses import CrossEntropyLoss
from .module import Sequential
from .nn.utils import clip_grad_norm_
from .recurrent import GRU, LSTM, RNN
from .shape import SelectOutput

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
DEFAULT_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "teaching.ko.md")


# -- data ---------------------------------------------------------------------------------------
class Corpus:
    """A text as integer ids: ``chars`` (the sorted distinct characters), ``ids`` (the text)."""

    def __init__(self, text):
        if len(text) < 20:
            raise ValueError(f"Corpus: text: expected at least 20 characters, got {len(text)}")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.ids = np.array([self.index[c] for c in text], dtype=np.int64)

    @classmethod
    def from_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                return cls(f.read())
        except FileNotFoundError:
            raise FileNotFoundError(f"--corpus: no such file: {path!r}") from None

    @classmethod
    def default(cls):
        """(name, corpus): the project's Korean guide beside the package (a clone of the project),
        or where there is none (an installed wheel) the docstrings of handbp's own modules and
        classes: the project's own text either way."""
        if os.path.exists(DEFAULT_CORPUS):
            return os.path.basename(DEFAULT_CORPUS), cls.from_file(DEFAULT_CORPUS)
        return "handbp's docstrings", cls(_docstrings())

    def windows(self, ids, length):
        """(x, y): the text cut into windows of ``length`` characters, y the next character of each."""
        n = (len(ids) - 1) // length
        x = ids[:n * length].reshape(n, length)
        y = ids[1:n * length + 1].reshape(n, length)
        return x, y

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def addition(n, digits, rng):
    """n sums of two ``digits``-digit numbers, digit by digit, the least significant first:
    x (n, digits + 1) tokens 10·a_t + b_t (the last step's digits are 0), y (n, digits + 1) the
    digits of a + b; and the numbers a, b."""
    a = rng.integers(0, 10, (n, digits))
    b = rng.integers(0, 10, (n, digits))
    pad = np.zeros((n, 1), dtype=np.int64)
    a, b = np.concatenate([a, pad], axis=1), np.concatenate([b, pad], axis=1)
    y = np.zeros_like(a)
    carry = np.zeros(n, dtype=np.int64)
    for t in range(digits + 1):                 # school addition: the known answer
        s = a[:, t] + b[:, t] + carry
        y[:, t], carry = s % 10, s // 10
    return 10 * a + b, y


# -- model and training ---------------------------------------------------------------------------
def sequence_model(vocab, classes, embedding, hidden, cell="lstm", layers=1, dropout=0.0, dtype=np.float64, rng=None):
    """Embedding(vocab, embedding) → cell(embedding, hidden, layers) → SelectOutput(0) → Flatten(0, 1)
    → Linear(hidden, classes): one row of class scores per step of every sequence."""
    rng = validate.generator("sequence_model", "rng", rng)
    return Sequential(Embedding(vocab, embedding, dtype=dtype, rng=rng),
                      CELLS[cell](embedding, hidden, num_layers=layers, dropout=dropout, batch_first=True,
                                  dtype=dtype, rng=rng),
                      SelectOutput(0), Flatten(0, 1), Linear(hidden, classes, dtype=dtype, rng=rng))


def train(model, optimizer, x, y, epochs, batch_size, rng, clip=1.0, callback=None):
    """Epochs of shuffled mini-batches of sequences: forward, cross-entropy over every step,
    zero_grad, backward, clip_grad_norm_, step. Returns the mean loss of each epoch."""
    loss = CrossEntropyLoss()
    history = []
    model.train()
    for epoch in range(epochs):
        total = 0.0
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            value = loss(model(x[idx]), y[idx].reshape(-1))
            if not np.isfinite(value):
                raise FloatingPointError(f"the loss is {value} at epoch {epoch}; lower the learning rate")
            optimizer.zero_grad()
            model.backward(loss.backward())
            if clip:
                clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            total += value * len(idx)
        history.append(total / len(x))
        if callback is not None:
            callback(epoch, history[-1])
    return history


def mean_loss(model, x, y, batch_size=256):
    """Cross-entropy per step (nats) of ``model`` on sequences x with targets y, in eval mode."""
    loss, total = CrossEntropyLoss(reduction="sum"), 0.0
    model.eval()
    for start in range(0, len(x), batch_size):
        total += loss(model(x[start:start + batch_size]), y[start:start + batch_size].reshape(-1))
    model.train()
    return total / y.size


def predict(model, x, batch_size=256):
    """The most likely class at every step, (len(x), steps)."""
    model.eval()
    out = np.concatenate([model(x[s:s + batch_size]).argmax(axis=-1) for s in range(0, len(x), batch_size)])
    model.train()
    return out.reshape(x.shape)


def sample(model, corpus, prompt, length, rng, temperature=0.8):
    """``length`` characters drawn one at a time after ``prompt``, each step re-reading the text so
    far (the model keeps no state between calls), at ``temperature``."""
    ids = [corpus.index[c] for c in prompt if c in corpus.index] or [0]
    model.eval()
    for _ in range(length):
        scores = model(np.array([ids[-100:]]))[-1].astype(np.float64) / temperature
        p = np.exp(scores - scores.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    model.train()
    return corpus.decode(ids)


def unigram_bits(train_ids, valid_ids, vocab):
    """Bits per character on ``valid_ids`` of a model that knows only the characters' frequencies
    in ``train_ids`` (add-one smoothing): the baseline a sequence model must beat."""
    counts = np.bincount(train_ids, minlength=vocab) + 1.0
    return float(-np.mean(np.log2(counts[valid_ids] / counts.sum())))


def _docstrings():
    """The docstrings of handbp's top-level modules and of the classes they define, in name order."""
    import handbp
    parts = []
    for info in sorted(pkgutil.iter_modules(handbp.__path__), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"handbp.{info.name}")
        parts.append(inspect.getdoc(module) or "")
        parts += [inspect.getdoc(obj) or "" for obj in vars(module).values()
                  if isinstance(obj, type) and obj.__module__ == module.__name__]
    return "\n\n".join(p for p in parts if p)


# -- the two tasks, as handbp train runs them -----------------------------------------------------
def run_chars(args, optimizer_for, report, clock=time.perf_counter):
    name, corpus = (os.path.basename(args.corpus), Corpus.from_file(args.corpus)) if args.corpus else Corpus.default()
    rng = np.random.default_rng(args.seed)
    cut = int(len(corpus.ids) * 0.9)
    train_ids, valid_ids = corpus.ids[:cut], corpus.ids[cut:]
    x, y = corpus.windows(train_ids, args.length)
    vx, vy = corpus.windows(valid_ids, min(args.length, len(valid_ids) - 1))
    if args.samples is not None:
        x, y = x[:args.samples], y[:args.samples]
    V = len(corpus.chars)
    model = sequence_model(V, V, args.embedding, args.width, args.cell, args.hidden_depth + 1, args.dropout,
                           np.dtype(args.dtype), rng)
    optimizer = optimizer_for(model)
    t = clock()
    train(model, optimizer, x, y, args.epochs, args.batch_size, rng, args.clip, report)
    seconds = clock() - t
    bits = 1 / np.log(2)
    train_bits, valid_bits = mean_loss(model, x, y) * bits, mean_loss(model, vx, vy) * bits
    lines = [f"chars: {len(corpus.ids)} characters ({V} distinct) of {name}, "
             f"{args.cell.upper()} {args.width}: train {train_bits:.3f} bits/char, validation {valid_bits:.3f} "
             f"bits/char (a unigram model: {unigram_bits(train_ids, valid_ids, V):.3f}) "
             f"({args.epochs} epochs, {seconds:.1f} s)",
             "sample: " + sample(model, corpus, corpus.decode(valid_ids[:20]), 80, rng).replace("\n", "⏎")]
    return model, optimizer, lines


def run_add(args, optimizer_for, report, clock=time.perf_counter):
    rng = np.random.default_rng(args.seed)
    n = 2000 if args.samples is None else args.samples
    x, y = addition(n, args.length, rng)
    model = sequence_model(100, 10, args.embedding, args.width, args.cell, args.hidden_depth + 1, args.dropout,
                           np.dtype(args.dtype), rng)
    optimizer = optimizer_for(model)
    t = clock()
    train(model, optimizer, x, y, args.epochs, args.batch_size, rng, args.clip, report)
    seconds = clock() - t
    lines = [f"add: {n} sums of {args.length}-digit numbers, {args.cell.upper()} {args.width}, {args.epochs} epochs, "
             f"{seconds:.1f} s; fresh sums, digit by digit and whole:"]
    for digits in sorted({args.length, 2 * args.length + 4}):
        tx, ty = addition(1000, digits, np.random.default_rng(args.seed + 1))
        guess = predict(model, tx)
        lines.append(f"  {digits:3d} digits: {np.mean(guess == ty):7.2%} of the digits, {np.mean((guess == ty).all(1)):7.2%} "
                     f"of the sums exactly right{' (longer than any trained on)' if digits != args.length else ''}")
    return model, optimizer, lines
