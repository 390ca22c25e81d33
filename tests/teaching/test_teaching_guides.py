"""The teaching guides: the Korean one carries every code block of the English one, uses the terms
of its glossary and none of the ambiguous words they replaced, quotes the tool exactly as it prints,
and states the notebook's closing claim as the notebook does."""
import pathlib
import re
import shlex

import pytest

from handbp.cli import main

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
EN, KO = ((DOCS / name).read_text(encoding="utf-8") for name in ("teaching.md", "teaching.ko.md"))
GLOSSARY = ("순전파", "역전파", "연쇄 법칙(체인 룰)", "기울기(그래디언트)", "국소 미분", "상류 기울기")
# words the earlier Korean guide used ambiguously: "인자" for a factor, "배치" for the weight layout,
# home-made names for the upstream gradient, and a closing claim the notebook does not make
BANNED = ("인자", "PyTorch의 배치", "배치를 따릅", "위쪽 기울기", "위에서 내려온 기울기", "그 차이가 커진다는")


def blocks(text, lang=None):
    """The fenced code blocks of a markdown text (of one language, or all)."""
    return [body for tag, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang is None or tag == lang]


def code_only(block):
    return [re.sub(r"\s+#.*$", "", line).rstrip() for line in block.splitlines()]


def test_the_korean_guide_carries_every_code_block():
    assert [code_only(b) for b in blocks(KO, "python")] == [code_only(b) for b in blocks(EN, "python")]
    commands = lambda text: [b.splitlines()[0].replace(" --lang ko", "") for b in blocks(text)]  # noqa: E731
    assert commands(KO) == commands(EN)


def test_the_glossary_terms_are_used_and_the_ambiguous_words_are_not():
    table = KO[KO.index("## 용어"):KO.index("코드를 실행하며")]
    body = KO.replace(table, "")
    for term in GLOSSARY:
        assert term in table, term
        plain = term.split("(")[0]
        assert body.count(plain) >= 1, term
    for word in BANNED:
        assert word not in KO, word
    # the loanwords appear only in their glossary form
    assert KO.count("체인 룰") == KO.count("연쇄 법칙(체인 룰)")
    assert KO.count("그래디언트") == KO.count("기울기(그래디언트)")


def test_the_closing_claim_is_quoted_as_the_notebook_states_it():
    assert "속도가\n안정적으로 조금씩 증가하는것을 확인할 수 있습니다" in KO or \
        "속도가 안정적으로 조금씩 증가하는것을 확인할 수 있습니다" in KO
    assert "you can see the time grow steadily, a little at a time" in EN
    assert "increasingly so as width and depth grow" not in EN      # the old misreading
    for text in (EN, KO):
        assert "164,917" in text and "5,165" in text


def quoted_runs():
    """Each block that starts with ``$ handbp ...``: the command and the lines it quotes."""
    for name, text in (("teaching.md", EN), ("teaching.ko.md", KO)):
        for block in blocks(text):
            lines = block.rstrip("\n").splitlines()
            if lines and lines[0].startswith("$ handbp "):
                yield pytest.param(lines[0][len("$ handbp "):], lines[1:], id=f"{name}: {lines[0][2:60]}")


@pytest.mark.parametrize("command, quoted", list(quoted_runs()))
def test_the_tool_is_quoted_exactly_as_it_prints(command, quoted, capsys):
    """Every quoted line is a line of the command's output, in order ("..." leaves lines out)."""
    assert main(shlex.split(command)) == 0
    out = capsys.readouterr().out.splitlines()
    at = 0
    for line in quoted:
        if line == "...":
            continue
        assert line in out[at:], f"{command}: not printed (in this order): {line!r}"
        at = out.index(line, at) + 1
