"""sasa_viz.cli, what the command lines share: every mistake is one line on stderr, never
a traceback, found as the arguments are parsed, before any data is decoded; and, run
as real processes, each command answers the mistakes of the issue that way."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sasa_viz import cli
from sasa_viz.cli import (NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, Parser, device,
                          figure_file, model_name, one_line_errors, writable_folder)
from sasa_viz.inspection import statistics

ROOT = Path(__file__).resolve().parent.parent


def test_an_unknown_model_is_refused_naming_the_closest_and_all():
    check = model_name(["sasa-cifar10", "conv-cifar10", "sasa-resnet26"])
    assert check("conv-cifar10") == "conv-cifar10"
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        check("sasa-cifar1")
    assert str(refused.value) == ("unknown model 'sasa-cifar1'; did you mean sasa-cifar10? "
                                  "known models: sasa-cifar10, conv-cifar10, sasa-resnet26")
    with pytest.raises(argparse.ArgumentTypeError, match="^unknown model 'xyz'; known models"):
        check("xyz")


@pytest.mark.parametrize("kind, text, value", [
    (POSITIVE_INT, "3", 3), (NON_NEGATIVE_INT, "0", 0), (POSITIVE_FLOAT, "0.5", 0.5)])
def test_numbers_in_range_are_read(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize("kind, text", [
    (POSITIVE_INT, "0"), (POSITIVE_INT, "-2"), (POSITIVE_INT, "1.5"), (POSITIVE_INT, "x"),
    (NON_NEGATIVE_INT, "-1"), (POSITIVE_FLOAT, "0"), (POSITIVE_FLOAT, "nan"),
    (POSITIVE_FLOAT, "inf")])
def test_numbers_out_of_range_are_refused_saying_what_was_expected(kind, text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^expected .*, got '{text}'$"):
        kind(text)


def test_a_folder_to_be_made_is_checked_without_being_made(tmp_path):
    assert writable_folder(str(tmp_path / "runs" / "a")) == str(tmp_path / "runs" / "a")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(argparse.ArgumentTypeError, match="cannot be a folder: .*file is a file"):
        writable_folder(str(tmp_path / "file" / "runs"))


def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    """Writing is tried, not judged from permission bits (root ignores them): a folder
    where a file cannot be made is refused, whoever runs the test."""
    locked = tmp_path / "locked"
    locked.mkdir()

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", refused)
    with pytest.raises(argparse.ArgumentTypeError, match="locked/runs cannot be written"):
        writable_folder(str(locked / "runs"))


def test_figure_files_need_a_format_matplotlib_writes(tmp_path):
    for name in ("c.png", "c.PDF", "c"):
        assert figure_file(str(tmp_path / name)) == str(tmp_path / name)
    with pytest.raises(argparse.ArgumentTypeError, match=r"\.xyz files are not supported; "
                                                         r"use one of .*\.png"):
        figure_file(str(tmp_path / "c.xyz"))


def test_devices_must_exist_here():
    assert device("auto") == "auto" and device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="^unknown device 'nope'; use auto"):
        device("nope")


def test_parser_mistakes_are_one_line_with_status_2(capsys):
    parser = Parser("tool")
    parser.add_argument("--count", type=POSITIVE_INT, required=True)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--count", "0"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("tool: argument --count: expected a whole number of "
                                       "at least 1, got '0'\n")


def test_user_errors_end_in_one_line_and_bugs_keep_their_traceback():
    with pytest.raises(SystemExit) as stop:
        with one_line_errors("tool"):
            raise OSError("cannot write\n  out/x.png")
    assert stop.value.code == "tool: cannot write out/x.png"
    with pytest.raises(KeyError):
        with one_line_errors("tool"):
            raise KeyError("a bug")


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """A folder the --data check accepts but the loader would fail on (no images)."""
    (tmp_path / "cifar" / "airplane").mkdir(parents=True)
    return tmp_path / "cifar"


@pytest.mark.parametrize("argv, message", [
    ("--model sasa-cifar1 --sample", "argument --model: unknown model 'sasa-cifar1'; did you "
                                     "mean sasa-cifar10?"),
    ("--model sasa-cifar10 --data {tmp}/missing", "argument --data: No CIFAR-10 data at"),
    ("--model sasa-cifar10 --data {data} --limit 0", "argument --limit: expected a whole "
                                                     "number of at least 1, got '0'"),
    ("--model sasa-cifar10 --sample --batch-size 0", "argument --batch-size: expected"),
    ("--model sasa-cifar10 --sample --device nope", "argument --device: unknown device"),
    ("--model sasa-cifar10", "one of the arguments --data --sample is required"),
])
def test_statistics_mistakes_are_one_line_before_anything_loads(argv, message, fake_data,
                                                                tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading started before the mistake was found")
    monkeypatch.setattr(statistics, "load_pretrained", refuse)
    monkeypatch.setattr(statistics, "load_cifar10", refuse)
    with pytest.raises(SystemExit) as stop:
        statistics.main(argv.format(tmp=tmp_path, data=fake_data).split())
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("statistics: ") and message in err


# the mistakes, one per command at least: (argv, exit status, words of the line)
# one mistake of each kind and command as a real process (the rest are checked in
# process, with loaders that fail if called: test_pretrained, test_evaluate, test_render)
PROCESS_MISTAKES = [
    ("train --model sasa-cifar10 --data {data} --limit 500 --epochs 1", 2,
     "the one-cycle schedule needs at least 5"),
    ("train --model sasa-cifar10 --data {data} --out {shipped}", 2,
     "is the shipped weights folder"),
    ("evaluate --model sasa-cifar10 --data {data} --weights {tmp}", 1,
     "no pretrained model 'sasa-cifar10'"),
    ("render {tmp}/missing.jpg --out {tmp}/x.png", 1, "no image file at"),
    ("statistics --model nope --sample", 2, "unknown model 'nope'"),
]


@pytest.mark.slow                                 # one process per mistake
@pytest.mark.parametrize("argv, status, words", PROCESS_MISTAKES)
def test_each_command_answers_a_mistake_with_one_line_and_no_traceback(argv, status, words,
                                                                       fake_data, tmp_path):
    from sasa_viz.models.pretrained import PRETRAINED_DIR
    photo = ROOT / "sasa_viz" / "samples" / "photos" / "chelsea.png"
    command, *args = argv.format(tmp=tmp_path, data=fake_data, shipped=PRETRAINED_DIR,
                                 photo=photo).split()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SASA_VIZ_CACHE": str(tmp_path / "cache")}
    module = "sasa_viz." + {"statistics": "inspection.statistics"}.get(command, command)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"{command}: ") and words in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar"]      # nothing written

