"""The measurement tools' shared helpers that need no GPU (CPU)."""
import pytest

from bench.tools.common import knob_value, split_knob


def test_knob_value_parses_booleans_strictly():
    # bool("0") is True: the tools' ATTR=VALUE knobs must not turn "0" into True
    for text in ("0", "", "false", "off", "False"):
        assert knob_value(True, text) is False
    for text in ("1", "true", "on", "TRUE"):
        assert knob_value(False, text) is True
    with pytest.raises(ValueError, match="boolean"):
        knob_value(True, "2")


def test_knob_value_keeps_the_attribute_type():
    assert knob_value(768, "1000000") == 1000000 and isinstance(knob_value(768, "5"), int)
    assert knob_value(0.5, "0.25") == 0.25
    assert knob_value("a", "b") == "b"
    with pytest.raises(ValueError):
        knob_value(3, "x")


def test_split_knob():
    assert split_knob("SECTOR_TWINS=") == ("SECTOR_TWINS", "")
    assert split_knob("selector.X=1") == ("selector.X", "1")
    assert split_knob("A=b=c") == ("A", "b=c")
    for bad in ("NOEQUALS", "=1"):
        with pytest.raises(ValueError, match="ATTR=VALUE"):
            split_knob(bad)
