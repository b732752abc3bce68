"""How numbers are written: one rule for every grid, map, caption and equation.

The numbers shown together (one grid, the grids of one colour scale, the two numbers of
a comparison) share one format, chosen so that their differences show: two significant
digits of their spread (largest minus smallest). Where that needs more than
`max_decimals` decimals (2 by default, to fit a grid's cells) they share a power of ten
instead, "2.19" in a grid marked "×10⁻²" rather than "0.0219". A zero is never written
"-0".

    fmt = number_format(values)       # one format for these numbers
    fmt(0.0219), fmt.unit             # "2.19", "×10⁻²": the grid's cells and its label
    fmt.text(0.0219)                  # "2.19×10⁻²": a number on its own, in a sentence
    fmt.span(low, high)               # "1.89 to 2.19 ×10⁻²": a colour scale's range
    sentence_format([a, b]).text(a)   # numbers for a sentence: 4 significant digits
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

    def __call__(self, value: float) -> str:
        """The number as written in a grid cell (in units of `unit`)."""
        text = f"{float(value) / 10.0 ** self.exponent:.{self.decimals}f}"
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


def number_format(values: Iterable[float], significant: int = 2,
                  max_decimals: int = 2) -> NumberFormat:
    """The format that shows how `values` differ: `significant` significant digits of
    their spread (of the largest |value| when they are all equal). NaN and infinities
    are ignored. More decimals than `max_decimals` become a shared power of ten, that of
    the largest |value|."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                       dtype=float).ravel()
    finite = array[np.isfinite(array)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    if largest == 0.0:
        return NumberFormat(0)
    spread = float(finite.max() - finite.min())
    if spread <= largest * 1e-9:                     # all equal, up to float rounding
        spread = largest
    decimals = max(0, significant - 1 - math.floor(math.log10(spread)))
    if decimals <= max_decimals:
        return NumberFormat(decimals)
    exponent = math.floor(math.log10(largest))
    return NumberFormat(max(0, decimals + exponent), exponent)


def sentence_format(values: Iterable[float], significant: int = 4) -> NumberFormat:
    """A format for numbers read one by one, in a sentence: at least `significant`
    significant digits of the largest |value|, more if the values differ only further
    down (as `number_format` shows differences), up to 8 decimals."""
    values = list(values)
    formats = [number_format([*values, 0.0], significant, 8),   # spread from 0: the size
               number_format(values, max_decimals=8)]           # spread: the differences
    return min(formats, key=lambda fmt: fmt.exponent - fmt.decimals)   # the finer step


def percent(fraction: float) -> str:
    """A share as a percentage with no false zero: "69%", "0.4%", "0%"."""
    share = 100.0 * float(fraction)
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"
