"""Schedules named in config files: the value each form gives over training, and the forms refused."""

import math

import pytest

from ltc_rl.rl.schedules import ExponentialSchedule, parse_schedule


def test_each_form_gives_its_value_from_start_to_end_of_training():
    assert parse_schedule(3e-4) == 3e-4
    linear = parse_schedule("lin_1e-3")
    assert [linear(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([1e-3, 5e-4, 0.0])
    geometric = parse_schedule("exp_1e-3_1e-5")
    assert isinstance(geometric, ExponentialSchedule)
    # progress_remaining runs from 1 (start) to 0 (end); halfway is the geometric mean, every tenth the same factor
    assert [geometric(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([1e-3, 1e-4, 1e-5])
    ratios = [geometric(p / 10) / geometric((p + 1) / 10) for p in range(10)]
    assert ratios == pytest.approx([10 ** -0.2] * 10)
    assert math.isclose(parse_schedule("exp_1e-5_1e-3")(0.0), 1e-3)  # a rising rate is allowed (warm-up)


@pytest.mark.parametrize("text", ["exp_1e-3", "exp_1e-3_0", "exp_1e-3_-1e-5", "exp_a_b", "exp_1_2_3", "lin_inf",
                                  "lin_", "fast", 0, -1e-3, True, None])
def test_malformed_schedules_are_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"'lin_<start>' \(linear decay to 0\) or 'exp_<start>_<end>'"):
        parse_schedule(text)
