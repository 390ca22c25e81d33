"""The results a course reads: Gradescope's ``results.json``, the score table, the Autolab line.

Gradescope's format (its "Autograder Specifications"): at the top ``score``, ``execution_time``,
``output`` (text every student sees: here the score table of the visible tests and any run-wide
message, such as an import error), ``visibility``, ``stdout_visibility`` (the autograder's log,
which shows every test: hidden from students) and ``tests``; per test ``score``, ``max_score``,
``status`` (``passed`` or ``failed``), ``name``, ``number`` (Gradescope orders by it), ``output``,
``tags``, ``visibility`` (``visible``; ``hidden``: never shown to students; ``after_due_date``;
``after_published``) and ``extra_data``. Each test's output starts with its points and the stages
that passed.
"""
import json
import os

KIND_TEXT = {"passed": "passed", "mismatch": "differs from torch", "raised": "your code raised",
             "timeout": "time limit", "crashed": "crashed", "import_error": "import error",
             "provenance": "not your own code", "error": "error", "skipped": "skipped",
             "not_finished": "did not finish", "running": "did not finish"}
LATER = {"after_due_date": "after the due date", "after_published": "when grades are published",
         "hidden": "only to the course staff"}


def not_finished(info):
    """A graded test's entry before any result: 0 points."""
    return {"name": info["name"], "number": info["number"], "max_score": info["max_score"], "score": 0.0,
            "visibility": info["visibility"], "key": info["key"], "kind": "not_finished",
            "output": f"0 / {info['max_score']:g} points: the grading run stopped before this test finished.",
            "extra_data": {"id": info["id"]}}


def _result(entry):
    """``differs from torch (failed: parameter gradients, update)``, ``crashed``, ..."""
    from .scoring import STAGE_TEXT
    text = KIND_TEXT.get(entry["kind"], entry["kind"])
    failed = entry["extra_data"].get("stages_failed")
    if failed:
        text += f" (failed: {', '.join(STAGE_TEXT[s].split(' (')[0] for s in failed)})"
    return text


def summary_table(entries, everything=False):
    """The score table: every test (``everything``, for the course's log), or the visible ones and
    a line per later visibility (for students)."""
    shown = [e for e in entries if everything or e["visibility"] == "visible"]
    rows = [(e["number"] or "", e["name"], f"{e['score']:g} / {e['max_score']:g}", _result(e)) for e in shown]
    total = sum(e["score"] for e in entries)
    maximum = sum(e["max_score"] for e in entries)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("#", "test", "points", "result"))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format("#", "test", "points", "result").rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    if not everything:
        for visibility, when in LATER.items():
            later = [e for e in entries if e["visibility"] == visibility]
            if later:
                lines.append(f"{len(later)} more test{'s' * (len(later) > 1)} "
                             f"({sum(e['max_score'] for e in later):g} points) shown {when}")
    lines.append(f"total: {total:g} / {maximum:g}")
    return "\n".join(lines)


def gradescope_document(entries, seconds, notes=()):
    """Gradescope's ``results.json`` for these test entries (see the module docstring)."""
    tests = []
    for e in entries:
        passed = e["kind"] == "passed" and e["score"] >= e["max_score"]
        tests.append({"name": e["name"], "number": e["number"], "score": e["score"], "max_score": e["max_score"],
                      "status": "passed" if passed else "failed", "output": e["output"],
                      "output_format": "text", "tags": [e["kind"]], "visibility": e["visibility"],
                      "extra_data": e["extra_data"]})
    output = "\n\n".join([summary_table(entries)] + _notes(entries, notes))
    return {"score": round(sum(e["score"] for e in entries), 6), "execution_time": round(seconds, 3),
            "output": output, "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
            "extra_data": {"max_score": sum(e["max_score"] for e in entries)}, "tests": tests}


def _notes(entries, notes):
    """Run-wide messages: the given ones, then an import error or a provenance message (each once)."""
    out = list(notes)
    for kind in ("import_error", "provenance"):
        for e in entries:
            if e["kind"] == kind:
                body = e["output"].split("\n\n", 1)[-1].rsplit("\n\nreplay:", 1)[0]
                if body not in out:
                    out.append(body)
                break
    return out


def write_json(path, doc):
    """Write ``doc`` to ``path`` atomically (a reader sees the old file or the new one)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def write_gradescope(path, entries, seconds, notes=()):
    write_json(path, gradescope_document(entries, seconds, notes))


def autolab_line(entries):
    """Autolab's ``{"scores": {problem: points}}``: each test's points under its ``problem`` (the
    marker's argument; the test's name without one), summed per problem."""
    scores = {}
    for e in entries:
        scores[e["key"]] = round(scores.get(e["key"], 0.0) + e["score"], 6)
    return json.dumps({"scores": scores})


def crashed_run_document(reason, log_tail="", seconds=0.0):
    """``results.json`` for a grading run that died before it wrote one (e.g. a crash while the
    tests were collected): score 0, with the reason and the end of its log in the output."""
    output = f"The grading run failed before it could score your code: {reason}."
    if log_tail:
        output += f"\n\nThe end of its log:\n{log_tail[-3000:]}"
    return {"score": 0.0, "execution_time": round(seconds, 3), "output": output, "output_format": "text",
            "visibility": "visible", "stdout_visibility": "hidden", "extra_data": {"crashed_run": reason}, "tests": []}
