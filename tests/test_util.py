"""What the rooms share: durations as users write them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pexen.util import parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("90", 90), ("2.5", 2.5), ("5m", 300), ("1h 30m", 5400), ("1h30m", 5400),
    ("1.5h", 5400), ("2d", 172800), ("30 s", 30), ("10sec", 10), ("3 min", 180),
    (" 5M ", 300),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "1h 30", "abc", "1..5m", "-5m", "5m-",
                                  "5 minutes", "h1"])
def test_not_durations_name_the_text(text):
    with pytest.raises(ValueError, match="not a duration: " + repr(text).replace("\\", "\\\\")
                       .replace(".", "\\.").replace("(", "\\(")):
        parse_duration(text)


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_units_add_up(h, m, s):
    assert parse_duration(f"{h}h {m}m {s}s") == h * 3600 + m * 60 + s
    assert parse_duration(f"{h}h{m}m{s}s") == h * 3600 + m * 60 + s
