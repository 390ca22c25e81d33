"""The command line as a user of the installed wheel meets it: every command's ``--help`` says its
whole first sentence; ``-- PYTEST_ARGS`` reaches ``handbp grade`` wherever the options stand;
``explain --png`` without matplotlib is one line before any output, not a traceback after it; and
``bench grading`` without the example course (the wheel holds the packages only) says where it is;
``explain --checkpoint`` of a missing file names the option."""
import subprocess
import sys

import pytest

from handbp import cli
from handbp.cli import build_parser, main, parse

COMMANDS = sorted(cli.COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_ends_its_sentence(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    assert sub.description.endswith("."), sub.description


@pytest.mark.parametrize("argv, expected", [
    (["grade", "run", "T", "S", "-j", "2", "--", "-x", "-k", "a"], ["-x", "-k", "a"]),
    (["grade", "run", "-j", "2", "T", "S", "--", "-x"], ["-x"]),
    (["grade", "run", "T", "S", "--", "--", "-x"], ["--", "-x"]),
    (["grade", "bundle", "T", "-o", "z.zip", "--", "-p", "no:cacheprovider"], ["-p", "no:cacheprovider"]),
    (["grade", "run", "T", "S", "-j", "2"], []),
])
def test_words_after_double_dash_are_grades_pytest_arguments(argv, expected):
    args = parse(build_parser(), argv)
    assert args.pytest_args == expected
    assert args.tests == "T"


def test_a_command_without_passthrough_keeps_argparses_double_dash():
    args = parse(build_parser(), ["exercise", "check", "--", "-odd.py"])
    assert args.file == "-odd.py"


def test_explain_png_without_matplotlib_is_one_line_before_any_output(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from handbp.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "explain", "--no-torch", "--png", str(tmp_path / "g.png")],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == 'handbp explain: error: --png: needs matplotlib: pip install "handbp[plot]"\n'


def test_bench_grading_without_the_example_course_says_where_it_is(tmp_path, monkeypatch, capsys):
    from handbp.benchmarks import grading
    monkeypatch.setattr(grading, "COURSE", str(tmp_path / "site-packages" / "examples" / "course"))
    assert main(["bench", "grading"]) == 2
    err = capsys.readouterr().err
    assert "the example course (examples/course) comes with the source repository" in err
    assert "--course" in err and "Traceback" not in err
    assert main(["bench", "grading", "--course", str(tmp_path)]) == 2     # a folder given, but not a course
    assert "expected a folder holding tests/ and submissions/" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["missing.npz", "a/folder/"])
def test_explain_names_the_checkpoint_option_for_a_missing_file(tmp_path, capsys, path):
    (tmp_path / "a" / "folder").mkdir(parents=True)
    target = str(tmp_path / path)
    assert main(["explain", "--no-torch", "--checkpoint", target]) == 2
    assert capsys.readouterr().err == f"handbp explain: error: --checkpoint: no such file: {target!r}\n"
