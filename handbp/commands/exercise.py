"""Exercises: write a layer's backward (or find a zoo bug) and check it against torch, tensor by
tensor: handbp exercise list | start NAME [--lang ko|en] | check FILE."""
import copy
import importlib.util
import pathlib

import numpy as np

from . import have_torch

WIDTH = 80
WORDS = {
    "en": {"list": "exercises (handbp exercise start NAME --lang en|ko):", "wrote": "wrote {file}: write "
           "{cls}.backward, then run  handbp exercise check {file}", "wrote_bug": "wrote {file}: find the bug in "
           "{cls}, fix it, then run  handbp exercise check {file}", "checking": "checking {cls} ({name}) against "
           "torch, step {step} of its run, tensor by tensor:", "todo": "✗ {cls}.backward is not written yet: {err}",
           "pass": "✓ correct: every tensor of every step ({steps} steps) matches torch",
           "fail": "✗ not yet: at step {step}, first at {where}", "raised": "{phase} raised {err}",
           "does_not_run": "✗ {file} does not run: {err}", "exists": "{file} exists already (--force to overwrite)"},
    "ko": {"list": "연습 문제 (handbp exercise start 이름 --lang en|ko):", "wrote": "{file}을(를) 만들었습니다: "
           "{cls}.backward를 작성한 뒤  handbp exercise check {file}", "wrote_bug": "{file}을(를) 만들었습니다: "
           "{cls}의 버그를 찾아 고친 뒤  handbp exercise check {file}", "checking": "{cls} ({name})을(를) torch와 "
           "비교합니다, 실행의 {step}번째 스텝, 텐서 하나하나:", "todo": "✗ {cls}.backward를 아직 작성하지 않았습니다: {err}",
           "pass": "✓ 맞습니다: 모든 스텝({steps}스텝)의 모든 텐서가 torch와 같습니다",
           "fail": "✗ 아직 틀렸습니다: {step}번째 스텝, 처음 틀린 곳은 {where}", "raised": "{phase}에서 예외: {err}",
           "does_not_run": "✗ {file}이(가) 실행되지 않습니다: {err}",
           "exists": "{file}이(가) 이미 있습니다 (덮어쓰려면 --force)"},
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("list", help="list the exercises")
    p.add_argument("--lang", choices=("en", "ko"), default="en")
    p = sub.add_parser("start", help="write an exercise's skeleton to a file")
    p.add_argument("name", help="an exercise (see list)")
    p.add_argument("--lang", choices=("en", "ko"), default="en", help="language of the comments (default en)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default NAME.py here)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p = sub.add_parser("check", help="check a solution against torch, tensor by tensor")
    p.add_argument("file", help="the exercise file (written by start)")
    p.add_argument("--lang", choices=("en", "ko"), default=None, help="language of the report (default: the "
                   "file's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run it is checked on (default 0)")


def run(args):
    return {"list": _list, "start": _start, "check": _check}[args.action](args)


def say(text, indent=0, hang=2):
    from ..explain import wrap
    print("\n".join(wrap(text, WIDTH, indent, hang)))


def pad(s, n):
    """``s`` padded with spaces to ``n`` columns (a Korean character takes two)."""
    from ..explain import columns
    return s + " " * max(0, n - columns(s))


def _list(args):
    from ..exercises import exercises
    say(WORDS[args.lang]["list"])
    for e in exercises():
        say(f"{pad(e.name, 42)} {e.title[args.lang]}", 2, 44)
    return 0


def _start(args):
    from ..exercises import file_name, find
    e = find(args.name)
    path = pathlib.Path(args.out or file_name(e))
    if path.exists() and not args.force:
        raise ValueError(f"--out: {WORDS['en']['exists'].format(file=path)}")
    path.write_text(e.skeleton[args.lang].replace(file_name(e), str(path)), encoding="utf-8")
    say(WORDS[args.lang]["wrote_bug" if e.name.startswith("bug:") else "wrote"].format(file=path, cls=e.cls))
    return 0


def load(path):
    """The exercise file run as a module; its ``EXERCISE``, ``CLASS`` and ``LANG`` read."""
    spec = importlib.util.spec_from_file_location(f"handbp_exercise_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("EXERCISE", "CLASS"):
        if not isinstance(getattr(module, name, None), str):
            raise ValueError(f"FILE: {path} has no {name} = \"...\" line: expected a file written by "
                             "handbp exercise start")
    return module


def label(key, model, lang):
    """A tensor's name in the report."""
    kind, _, rest = key.partition(":")
    types = {p: type(m).__name__ for p, m in model.named_modules()}
    ko = lang == "ko"
    if kind == "output":
        return f"{rest} ({types.get(rest)})" + ("의 출력" if ko else " output")
    if kind == "grad_input":
        return f"{rest} ({types.get(rest)})" + ("의 dL/d(입력)" if ko else " dL/d(input)")
    if kind == "grad":
        return f"dL/d({rest})"
    if kind == "param":
        return f"업데이트 후 {rest}" if ko else f"{rest} after the update"
    if kind == "state":
        return f"{rest} (옵티마이저 상태)" if ko else f"{rest} (optimizer state)"
    if kind == "buffer":
        return f"버퍼 {rest}" if ko else f"buffer {rest}"
    return {"loss": "손실 L" if ko else "loss L", "grad_pred": "dL/dpred"}.get(kind, key)


def _check(args):
    from ..exercises import find
    path = pathlib.Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"FILE: no such file: {path}")
    try:
        module = load(path)
    except (SyntaxError, ImportError, NameError, AttributeError, TypeError) as err:
        lang = args.lang or "en"
        say(WORDS[lang]["does_not_run"].format(file=path, err=f"{type(err).__name__}: {err}"))
        return 1
    lang = args.lang or getattr(module, "LANG", "en")
    w = WORDS[lang]
    exercise = find(module.EXERCISE)
    cls = getattr(module, module.CLASS, None)
    if not isinstance(cls, type):
        raise ValueError(f"FILE: {path} defines no class {module.CLASS}")
    if not have_torch("exercise check"):
        return 2
    import crosscheck as cc
    case = exercise.build(cls, np.random.default_rng(args.seed))
    try:
        trace = cc.lockstep(*copy.deepcopy(case), raise_on_divergence=False)
    except NotImplementedError as err:
        say(w["todo"].format(cls=module.CLASS, err=err))
        return 1
    d = trace.divergence
    step = 0 if d is None else d.step
    model, loss, optimizer, data = case
    for x, y in data[:step]:                     # to the step where it went wrong, as lockstep did
        optimizer.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward())
        optimizer.step()
    x, y = data[step]
    e = cc.explain(model, loss, x, y, optimizer=optimizer, lang=lang)
    say(w["checking"].format(cls=module.CLASS, name=exercise.name, step=step))
    for key, ok in e.verdicts.items():
        if key.startswith("error:"):
            say(w["raised"].format(phase=key[6:], err=e.raised.get(key[6:], "")), 2, 4)
            continue
        err = e.errors.get(key, float("inf"))
        verdict = "wrong" if not ok else "exact" if err == 0 else "close"
        from crosscheck.words import VERDICT
        say(f"{pad(label(key, model, lang), 34)} {pad(VERDICT[verdict][lang], 12)} err {err:.2g}", 2, 4)
        if key in e.notes:
            say(e.notes[key], 6, 4)
    print()
    if d is None:
        say(w["pass"].format(steps=len(trace)))
        return 0
    say(w["fail"].format(step=d.step, where=f"{d.name} {d.quantity}") + (f" [{d.hint}]" if d.hint else ""))
    return 1

