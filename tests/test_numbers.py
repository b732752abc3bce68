"""sasa_viz.numbers: the numbers shown together are written so that they differ where
they differ, with a shared power of ten rather than a row of zeros, and never "-0"."""
import numpy as np
import pytest

from sasa_viz.numbers import (NumberFormat, number_format, percent, sentence_format,
                              shared_format, significant)


def test_nearly_uniform_weights_differ_as_written_with_a_shared_power_of_ten():
    weights = np.array([0.0189, 0.0204, 0.0219])
    fmt = number_format(weights)
    assert [fmt(w) for w in weights] == ["1.89", "2.04", "2.19"]
    assert fmt.unit == "×10⁻²" and fmt.text(0.0219) == "2.19×10⁻²"
    assert fmt.latex(0.0219) == r"2.19 \times 10^{-2}"
    assert fmt.span(0.0189, 0.0219) == "1.89 to 2.19 ×10⁻²"


def test_small_logits_are_not_all_zero_and_never_minus_zero():
    logits = np.array([-0.0777, -0.0021, 0.0008, 0.0728])
    written = [number_format(logits)(v) for v in logits]
    assert written == ["-0.08", "0.00", "0.00", "0.07"]
    assert not any(w.startswith("-0") and float(w) == 0 for w in written)
    content = np.array([0.001, 0.013, 0.017])       # one grid: its own differences show
    fmt = number_format(content)
    assert [fmt(v) for v in content] == ["0.1", "1.3", "1.7"] and fmt.unit == "×10⁻²"
    assert NumberFormat(2)(-0.001) == "0.00"


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.6], ["0.00", "0.60"]),              # trained weights: two decimals
    ([-5.0, 8.0], ["-5", "8"]),                  # large logits: no decimals
    ([3.5, 3.89], ["3.50", "3.89"]),
    ([100.1, 100.2], ["100.10", "100.20"]),      # close large numbers: their difference
    ([0.0, 0.0], ["0", "0"]),
    ([1e-7, 3e-7], ["1.0", "3.0"]),
])
def test_two_significant_digits_of_the_spread(values, expected):
    fmt = number_format(values)
    assert [fmt(v) for v in values] == expected


def test_infinities_and_nan_are_ignored():
    fmt = number_format([0.1, 0.5, np.nan, -np.inf])
    assert fmt(0.5) == "0.50"


def test_one_format_for_a_panel_shows_every_grids_own_differences():
    near_uniform = np.array([0.0204, 0.0206, 0.0209])         # needs 5 decimals
    selective = np.array([0.01, 0.35, 0.62])                   # needs 2
    fmt = shared_format([near_uniform, selective])
    assert len({fmt(v) for v in near_uniform}) == 3
    assert [fmt(v) for v in selective] == ["0.1000", "3.5000", "6.2000"] and fmt.unit == "×10⁻¹"
    assert shared_format([selective]) == number_format(selective)
    assert shared_format([[0.0, 0.0], [np.nan]]) == NumberFormat(0)


def test_significant_digits_of_one_number():
    assert [significant(x) for x in (0.5, 12.345, 0.0123456, 0.0, -1.5)] == [
        "0.500", "12.3", "0.0123", "0", "-1.50"]
    assert significant(1.26, 2) == "1.3"


def test_sentences_give_four_digits_or_as_many_as_the_difference_needs():
    assert sentence_format([-0.2073]).text(-0.2073) == "-0.2073"
    fmt = sentence_format([-0.2073, -0.2065])
    assert (fmt.text(-0.2073), fmt.text(-0.2065)) == ("-0.20730", "-0.20650")
    fmt = sentence_format([-0.0905018, -0.0905049])
    assert fmt.text(-0.0905018) != fmt.text(-0.0905049)


def test_percent():
    assert [percent(x) for x in (0.69, 0.004, 0.0, 1.0)] == ["69%", "0.4%", "0%", "100%"]
    assert [percent(x) for x in (1.1e-7, 0.0001)] == ["<0.01%", "0.01%"]   # not "1.1e-05%"


def test_weights_have_one_precision_and_a_small_weight_is_not_zero():
    from sasa_viz.numbers import NATS, WEIGHT
    assert [WEIGHT(w) for w in (0.1234, 0.0609, 0.0648, 1.0, 0.0004, 0.0)] == [
        "0.123", "0.061", "0.065", "1.000", "<0.001", "0.000"]
    assert [NATS(e) for e in (2.9512, 3.04, 3.889277)] == ["2.95", "3.04", "3.89"]
