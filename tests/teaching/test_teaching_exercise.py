"""handbp exercise round-trips: the skeleton ``start`` writes runs and says its backward is still a
TODO; a correct backward passes ``check``; each planted mistake fails with its hint; a zoo bug
fails with crosscheck's hint until it is fixed; in English and in Korean."""
import re

import pytest

from crosscheck.zoo import expected
from handbp.cli import main
from handbp.exercises import LAYERS, exercises, file_name
from handbp.zoo import bugs

TODO = '        raise NotImplementedError("TODO: write backward")\n'

SOLUTIONS = {
    "sigmoid": "return dy * self.last_o * (1 - self.last_o)",
    "linear": "self.weight.accumulate(dy.T @ self.last_x)\nself.bias.accumulate(dy.sum(axis=0))\n"
              "return dy @ self.weight.data",
    "mse": "return self.last_diff * (dy / self.last_diff.size)",
    "softmax-cross-entropy": "g = self.last_softmax.copy()\ng[np.arange(len(self.last_y)), self.last_y] -= 1\n"
                             "return g * (dy / len(self.last_y))",
    "batchnorm1d": "xhat = self.last_xhat\nself.weight.accumulate((dy * xhat).sum(axis=0))\n"
                   "self.bias.accumulate(dy.sum(axis=0))\ng = dy * self.weight.data\n"
                   "return (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0)) * self.last_inv_std",
    "conv2d": "W = self.weight.data\n"
              "self.weight.accumulate(np.einsum('nohw,nchwij->ocij', dy, self.last_windows))\n"
              "self.bias.accumulate(dy.sum(axis=(0, 2, 3)))\n"
              "dxp = np.zeros_like(self.last_xp)\nHo, Wo = dy.shape[2:]\n"
              "for i in range(W.shape[2]):\n"
              "    for j in range(W.shape[3]):\n"
              "        dxp[:, :, i:i + Ho, j:j + Wo] += np.einsum('nohw,oc->nchw', dy, W[:, :, i, j])\n"
              "ph, pw = self.padding\n"
              "return dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]",
    "lstm": "dY, dh, dc = self.upstream(dy)\n"
            "W_ih, W_hh = self.weight_ih_l0.data, self.weight_hh_l0.data\n"
            "dx = np.empty_like(self.last_x)\n"
            "dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), 0\n"
            "for t in reversed(range(len(self.last_steps))):\n"
            "    h_prev, c_prev, i, f, g, o, c = self.last_steps[t]\n"
            "    dh = dh + dY[t]\n"
            "    dc = dc + dh * o * (1 - np.tanh(c) ** 2)\n"
            "    da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g ** 2),\n"
            "                         dh * np.tanh(c) * o * (1 - o)], axis=1)\n"
            "    dW_ih += da.T @ self.last_x[t]\n"
            "    dW_hh += da.T @ h_prev\n"
            "    db = db + da.sum(axis=0)\n"
            "    dx[t] = da @ W_ih\n"
            "    dh, dc = da @ W_hh, dc * f\n"
            "self.weight_ih_l0.accumulate(dW_ih)\nself.weight_hh_l0.accumulate(dW_hh)\n"
            "self.bias_ih_l0.accumulate(db)\nself.bias_hh_l0.accumulate(db)\n"
            "return dx",
}
# exercise -> (a planted mistake, the hint check must give for it)
MISTAKES = {
    "sigmoid": [("return dy * self.last_o", "local_derivative")],
    "linear": [(SOLUTIONS["linear"].replace("dy.T @ self.last_x", "self.last_x.T @ dy"), "transpose"),
               (SOLUTIONS["linear"].replace("dy.sum(axis=0)", "dy"), "shape")],
    "mse": [("return self.last_diff * dy", "factor")],
    "softmax-cross-entropy": [(SOLUTIONS["softmax-cross-entropy"].replace(" / len(self.last_y)", ""), "factor")],
    "batchnorm1d": [(SOLUTIONS["batchnorm1d"].replace("(g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))", "g"),
                     "local_derivative")],
    "conv2d": [(SOLUTIONS["conv2d"].replace("self.last_windows))", "self.last_windows)[:, :, ::-1, ::-1])"),
                "flipped_kernel"),
               (SOLUTIONS["conv2d"].replace("return dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]",
                                            "return dxp"), "padding")],
    "lstm": [(SOLUTIONS["lstm"].replace("dh, dc = da @ W_hh, dc * f", "dh, dc = 0 * dh, dc * f"), "through_time"),
             (SOLUTIONS["lstm"].replace("dh * np.tanh(c) * o", "dh * o"), "local_derivative")],
}


def test_every_layer_exercise_has_a_solution_and_a_mistake():
    assert sorted(SOLUTIONS) == sorted(MISTAKES) == sorted(e.name for e in LAYERS)


def write(tmp_path, name, lang, body=None, capsys=None):
    path = tmp_path / file_name(next(e for e in exercises() if e.name == name))
    assert main(["exercise", "start", name, "--lang", lang, "--out", str(path), "--force"]) == 0
    if body is not None:
        text = path.read_text(encoding="utf-8")
        assert TODO in text
        path.write_text(text.replace(TODO, "".join(f"        {line}\n" for line in body.splitlines())),
                        encoding="utf-8")
    if capsys is not None:
        capsys.readouterr()
    return path


@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("name", list(SOLUTIONS))
def test_the_skeleton_runs_and_says_todo(name, lang, tmp_path, capsys):
    path = write(tmp_path, name, lang, capsys=capsys)
    text = path.read_text(encoding="utf-8")
    assert "____" in text and f'LANG = "{lang}"' in text and "def forward" in text
    assert main(["exercise", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert ("is not written yet" if lang == "en" else "아직 작성하지 않았습니다") in out


@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("name", list(SOLUTIONS))
def test_a_correct_backward_passes(name, lang, tmp_path, capsys):
    path = write(tmp_path, name, lang, SOLUTIONS[name], capsys)
    assert main(["exercise", "check", str(path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert ("✓ correct: every tensor of every step" if lang == "en" else "✓ 맞습니다") in out
    assert ("wrong" if lang == "en" else "틀림") not in out
    assert re.search(r"(close|exact|허용 오차 안|정확히 같음) +err", out)


@pytest.mark.parametrize("name, k", [(n, k) for n, ms in MISTAKES.items() for k in range(len(ms))])
def test_each_planted_mistake_fails_with_its_hint(name, k, tmp_path, capsys):
    body, hint = MISTAKES[name][k]
    for lang, words in (("en", ("wrong", "✗ not yet", f"hint [{hint}]")),
                        ("ko", ("틀림", "✗ 아직 틀렸습니다", f"힌트 [{hint}]"))):
        path = write(tmp_path, name, lang, body, capsys)
        assert main(["exercise", "check", str(path)]) == 1
        out = capsys.readouterr().out
        assert all(w in out for w in words), out


@pytest.mark.parametrize("bug", [b.name for b in bugs()])
def test_a_zoo_bug_is_an_exercise_fixed_by_the_correct_class(bug, tmp_path, capsys):
    """As written, the planted class fails with crosscheck's hint for that bug; with the bug taken
    out (the class body replaced by ``pass``: its parent is right) it passes."""
    name = f"bug:{bug}"
    path = write(tmp_path, name, "en", capsys=capsys)
    text = path.read_text(encoding="utf-8")
    assert bug not in text.split("CLASS")[1]           # the class itself does not name its bug
    assert main(["exercise", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"hint [{expected(bug).hint}]" in out or f"[{expected(bug).hint}]" in out, out
    cls = re.search(r'^CLASS = "(\w+)"', text, re.M).group(1)
    head = text[:text.index(f"class {cls}(")]
    base = re.search(rf"^class {cls}\(([\w.]+)\):", text, re.M).group(1)
    path.write_text(head + f"class {cls}({base}):\n    pass\n", encoding="utf-8")
    assert main(["exercise", "check", str(path)]) == 0, capsys.readouterr().out


def test_exercise_commands_refuse_bad_input(tmp_path, capsys):
    assert main(["exercise", "start", "no-such"]) == 2
    assert "exercise: expected one of sigmoid, linear" in capsys.readouterr().err
    assert main(["exercise", "check", str(tmp_path / "missing.py")]) == 2
    (tmp_path / "other.py").write_text("x = 1\n")
    assert main(["exercise", "check", str(tmp_path / "other.py")]) == 2
    assert "no EXERCISE" in capsys.readouterr().err
    path = write(tmp_path, "sigmoid", "en", capsys=capsys)
    assert main(["exercise", "start", "sigmoid", "--out", str(path)]) == 2
    (tmp_path / "broken.py").write_text(path.read_text().replace("def backward", "def backward(("))
    assert main(["exercise", "check", str(tmp_path / "broken.py")]) == 1
    assert "does not run: SyntaxError" in capsys.readouterr().out


def test_exercise_list_names_every_exercise_in_80_columns(capsys):
    assert main(["exercise", "list", "--lang", "ko"]) == 0
    out = capsys.readouterr().out
    assert all(e.name in out for e in exercises()) and "bug:sign-flipped" in out
