"""The README's config reference is generated from the schema and must not drift from it."""

from __future__ import annotations

from config.schema import EnvironmentConfig
from tools.config_reference import README, embedded, table


def test_readme_embeds_the_current_reference() -> None:
    assert embedded(README.read_text()) == table(), "run: .venv/bin/python -m tools.config_reference --write"


def test_reference_lists_every_top_level_field() -> None:
    text = table()
    for name in EnvironmentConfig.model_fields:
        assert f"| `{name}` |" in text


def test_off_hours_rows_say_where_each_backend_goes() -> None:
    """ECS off-hours scale to zero; a SageMaker real-time endpoint only down to one instance."""
    rows = {line.split("|")[1].strip(" `"): line for line in table().splitlines()[2:]}
    assert "zero" in rows["ecs.off_hours.scale_down_cron"]
    sm = rows["sagemaker.off_hours.scale_down_cron"]
    assert "zero" not in sm and "1 instance" in sm
