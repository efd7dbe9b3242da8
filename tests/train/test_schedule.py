"""Learning-rate schedule shape."""

import pytest
from llm_launch.launcher.config.schema import ScheduleConfig
from llm_launch.train.schedule import lr_factor


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_warmup_then_decay_to_floor(name):
    schedule = ScheduleConfig(name=name, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, schedule, 100) == pytest.approx(0.1)
    assert lr_factor(9, schedule, 100) == pytest.approx(1.0)
    assert lr_factor(10, schedule, 100) == pytest.approx(1.0)
    assert lr_factor(100, schedule, 100) == pytest.approx(0.1)
    values = [lr_factor(s, schedule, 100) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)


def test_constant_after_warmup():
    schedule = ScheduleConfig(name="constant", warmup_steps=2, min_lr_ratio=0.1)
    assert [lr_factor(s, schedule, 10) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
