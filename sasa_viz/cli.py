"""What every command line of the project shares: a mistake ends the command with one
line, "NAME: what is wrong", never a traceback, and arguments are checked when they are
parsed, before any data is decoded or any model is built.

    parser = Parser("evaluate", description=...)
    parser.add_argument("--model", type=model_name(list_models()))
    parser.add_argument("--data", type=cifar10_source)
    parser.add_argument("--limit", type=POSITIVE_INT)
    with one_line_errors("evaluate"):
        run(parser.parse_args(argv))

Argument mistakes exit with status 2 (argparse's), failures while running (a damaged
weights file, a folder that cannot be written) with status 1.
"""
import argparse
import difflib
import math
import pickle
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, TypeVar

import torch
from matplotlib.backend_bases import FigureCanvasBase

from sasa_viz.models.data import find_source
from sasa_viz.models.folders import is_image_folder
from sasa_viz.models.pretrained import PretrainedError, resolve_device

Number = TypeVar("Number", int, float)

# what a user can fix: a damaged or missing file, a folder that cannot be written, data
# that is not CIFAR-10 (a PIL ImageError is a ValueError); anything else is a bug and
# keeps its traceback
USER_ERRORS = (PretrainedError, ValueError, OSError, pickle.UnpicklingError)


def one_line(text: object) -> str:
    """`text` with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line on stderr, "NAME: message", with exit
    status 2: argparse's usage block before it would push the message off the screen,
    and --help shows the usage."""

    def __init__(self, name: str, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    def error(self, message: str):
        self.exit(2, f"{self.name}: {one_line(message)}\n")


@contextmanager
def one_line_errors(name: str) -> Iterator[None]:
    """Ends the command with "NAME: what went wrong" on one line and exit status 1 when
    a USER_ERRORS exception escapes the block."""
    try:
        yield
    except USER_ERRORS as error:
        sys.exit(f"{name}: {one_line(error)}")


def model_name(names: List[str]) -> Callable[[str], str]:
    """An argparse type accepting one of `names`; anything else is refused naming the
    closest of them and listing them all."""
    def check(text: str) -> str:
        if text in names:
            return text
        close = difflib.get_close_matches(text, names, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; {guess}"
                                         f"known models: {', '.join(names)}")
    return check


def number(kind: Callable[[str], Number], allowed: Callable[[Number], bool],
           wanted: str) -> Callable[[str], Number]:
    """An argparse type: `kind(text)` when `allowed` says yes, else "expected WANTED"."""
    def check(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not allowed(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return check


POSITIVE_INT = number(int, lambda n: n >= 1, "a whole number of at least 1")
NON_NEGATIVE_INT = number(int, lambda n: n >= 0, "a whole number of at least 0")
POSITIVE_FLOAT = number(float, lambda x: 0 < x < math.inf, "a number above 0")
NON_NEGATIVE_FLOAT = number(float, lambda x: 0 <= x < math.inf, "a number of at least 0")


def cifar10_source(text: str) -> str:
    """An argparse type: a path the CIFAR-10 loader can read (`data.find_source`),
    checked without decoding anything."""
    try:
        find_source(text)
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error))
    return text


def training_data(text: str) -> str:
    """An argparse type: image folders (DIR/train/<class>/, DIR/val/<class>/) or a path
    the CIFAR-10 loader can read (`cifar10_source`)."""
    return text if is_image_folder(text) else cifar10_source(text)


def device(text: str) -> str:
    """An argparse type: "auto" or a torch device that exists on this machine."""
    try:
        chosen = resolve_device(text)
    except RuntimeError:                    # torch's message lists every device kind
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda "
                                         f"or mps")
    try:
        torch.empty(0, device=chosen)
    except (RuntimeError, AssertionError) as error:      # not built in, no driver, ...
        raise argparse.ArgumentTypeError(f"no {text} device here ({one_line(error)}); "
                                         f"use auto or cpu")
    return text


def existing_folder(text: str) -> str:
    """An argparse type: a folder that is there."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return text


def writable_folder(text: str) -> str:
    """An argparse type: a folder that exists or can be made, and can be written (a
    file is made and removed in it, or in its nearest existing ancestor: permission
    bits do not tell, e.g. for root or on a read-only mount), so a run does not fail at
    its end."""
    existing = Path(text).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be a folder: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text} cannot be written ({error.strerror} in "
                                         f"{existing})")
    return text


def figure_file(text: str) -> str:
    """An argparse type: a file matplotlib can save a figure to (a format it knows, from
    the suffix; none means PNG) in a folder that can be written."""
    suffix = Path(text).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise argparse.ArgumentTypeError(f"{text}: .{suffix} files are not supported; use "
                                         f"one of .{', .'.join(sorted(formats))}")
    writable_folder(str(Path(text).expanduser().absolute().parent))
    return text
