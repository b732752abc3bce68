"""How numbers are written: one rule for every grid, map, caption, table and equation.

The numbers shown together (one grid, the two numbers of a comparison) share one format,
chosen so that their differences show: two significant digits of their spread (largest
minus smallest). Where that needs more than `max_decimals` decimals (2 by default, to
fit a grid's cells) they share a power of ten instead, "2.19" in a grid marked "×10⁻²"
rather than "0.0219". The grids of one panel share one format too, fine enough for
every grid's own differences (`shared_format`). A zero is never written "-0".

    fmt = number_format(values)       # one format for these numbers
    fmt(0.0219), fmt.unit             # "2.19", "×10⁻²": the grid's cells and its label
    fmt.text(0.0219)                  # "2.19×10⁻²": a number on its own, in a sentence
    fmt.span(low, high)               # "1.89 to 2.19 ×10⁻²": a colour scale's range
    shared_format([grid_1, grid_2])   # one format for several grids of one panel
    sentence_format([a, b]).text(a)   # numbers for a sentence: 4 significant digits
    significant(1.23456)              # "1.23": one number, 3 significant digits

Two quantities have one fixed precision everywhere, so a student reads the same number
the same way in every grid, caption, picture and slide:

    WEIGHT(0.1234), WEIGHT(0.0004)    # "0.123", "<0.001": attention weights and every
                                      # other probability (softmax, p(a, b, m)), plain
                                      # decimals; a weight too small to write is not 0
    NATS(2.9512)                      # "2.95": entropy, in nats
"""
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class NumberFormat:
    """Write numbers as multiples of 10**exponent with `decimals` decimals."""
    decimals: int
    exponent: int = 0
    below: bool = False     # a positive number that would round to 0 is written "<0.001"

    def __call__(self, value: float) -> str:
        """The number as written in a grid cell (in units of `unit`)."""
        value = float(value) / 10.0 ** self.exponent
        text = f"{value:.{self.decimals}f}"
        if self.below and value > 0 and float(text) == 0:
            return f"<{10.0 ** -self.decimals:.{self.decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text

    @property
    def unit(self) -> str:
        """"" or the shared power of ten, e.g. "×10⁻²"."""
        return f"×10{str(self.exponent).translate(_SUPERSCRIPTS)}" if self.exponent else ""

    def text(self, value: float) -> str:
        """One number with its power of ten, for a sentence: "2.19×10⁻²", "0.219"."""
        return self(value) + self.unit

    def latex(self, value: float) -> str:
        """One number for KaTeX: "2.19 \\times 10^{-2}", "0.219"."""
        power = rf" \times 10^{{{self.exponent}}}" if self.exponent else ""
        return self(value) + power

    def span(self, low: float, high: float) -> str:
        """A range, e.g. of a colour scale: "1.89 to 2.19 ×10⁻²"."""
        return f"{self(low)} to {self(high)} {self.unit}".rstrip()


WEIGHT = NumberFormat(3, below=True)   # attention weights and other probabilities
NATS = NumberFormat(2)                  # entropy


def number_format(values: Iterable[float], significant: int = 2,
                  max_decimals: int = 2) -> NumberFormat:
    """The format that shows how `values` differ: `significant` significant digits of
    their spread (of the largest |value| when they are all equal). NaN and infinities
    are ignored. More decimals than `max_decimals` become a shared power of ten, that of
    the largest |value|."""
    return shared_format([values], significant, max_decimals)


def shared_format(groups: Iterable[Iterable[float]], significant: int = 2,
                  max_decimals: int = 2) -> NumberFormat:
    """One format for several groups of numbers shown together, e.g. the grids of one
    panel: as many decimals as the group whose differences need the most
    (`number_format` of each group), and where that is more than `max_decimals`, one
    power of ten for all, that of the largest |value| of any group."""
    arrays = [finite(group) for group in groups]
    needed = [d for d in (_decimals(a, significant) for a in arrays) if d is not None]
    if not needed:
        return NumberFormat(0)
    decimals = max(needed)
    if decimals <= max_decimals:
        return NumberFormat(decimals)
    largest = max(float(np.abs(a).max()) for a in arrays if a.size)
    exponent = math.floor(math.log10(largest))
    return NumberFormat(max(0, decimals + exponent), exponent)


def finite(values: Iterable[float]) -> np.ndarray:
    """The finite numbers of `values` (any iterable or array) as a flat float array."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                       dtype=float).ravel()
    return array[np.isfinite(array)]


def _decimals(values: np.ndarray, significant: int):
    """The decimals that show `significant` significant digits of the spread of
    `values` (finite; of the largest |value| when they are all equal), or None when
    there is nothing but zeros to show."""
    largest = float(np.abs(values).max()) if values.size else 0.0
    if largest == 0.0:
        return None
    spread = float(values.max() - values.min())
    if spread <= largest * 1e-9:                     # all equal, up to float rounding
        spread = largest
    return max(0, significant - 1 - math.floor(math.log10(spread)))


def sentence_format(values: Iterable[float], significant: int = 4) -> NumberFormat:
    """A format for numbers read one by one, in a sentence: at least `significant`
    significant digits of the largest |value|, more if the values differ only further
    down (as `number_format` shows differences), up to 8 decimals."""
    values = list(values)
    formats = [number_format([*values, 0.0], significant, 8),   # spread from 0: the size
               number_format(values, max_decimals=8)]           # spread: the differences
    return min(formats, key=lambda fmt: fmt.exponent - fmt.decimals)   # the finer step


def percent(fraction: float) -> str:
    """A share as a percentage with no false zero and no unreadable one: "69%", "0.4%",
    "<0.01%" (a share too small to write), "0%" (none at all)."""
    share = 100.0 * float(fraction)
    if 0 < share < 0.01:
        return "<0.01%"
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"


def relative(change: float) -> str:
    """A relative change, |after - before| / |before| (`explain.relative_change`), as a
    plain number with 2 significant digits: "0.42", "1.3", "3.1×10⁻⁷". Not a
    percentage: it is no share of anything and can exceed 1."""
    return significant(change, 2)


def significant(value: float, digits: int = 3) -> str:
    """One number with `digits` significant digits, trailing zeros kept ("0.500", "12.3",
    "0"), for a table or a sentence."""
    return number_format([value], digits, max_decimals=8).text(value)
