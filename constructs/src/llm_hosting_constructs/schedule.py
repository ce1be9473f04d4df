"""Off-hours: when a non-production service scales in for the night and back in the morning.

One shape for every backend and for the config that embeds it (``ecs.off_hours``,
``sagemaker.off_hours``): ECS scales to zero tasks and GPU hosts, a SageMaker real-time endpoint
down to one instance (it cannot scale to zero).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# AWS cron as EventBridge and Application Auto Scaling read it ("Cron expressions reference",
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html): six fields,
# these ranges, and exactly one of day-of-month / day-of-week is `?`. The ECS schedule also becomes
# an Auto Scaling group recurrence (5-field Unix cron, no year), so L, W, # and a year are not offered.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day-of-week", 1, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
    ("year", 1970, 2199, ()),
)
_CRON_SHAPE = "AWS cron 'minutes hours day-of-month month day-of-week year' in UTC, e.g. '0 19 ? * MON-FRI *'"


def _cron_value(token: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if token.upper() in names:
        return names.index(token.upper()) + low
    return int(token) if token.isdigit() and low <= int(token) <= high else None


def _cron_field_problem(value: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
    if value in ("*", "?"):
        return None if value == "*" or name in ("day-of-month", "day-of-week") else f"{name} cannot be '?'"
    for item in value.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) >= 1 and name != "day-of-week"):
            return f"{name} '{item}': a step is '/N' with N >= 1 (not in day-of-week)"
        if base == "*" and slash:
            continue
        start, dash, end = base.partition("-")
        first, last = _cron_value(start, low, high, names), _cron_value(end, low, high, names) if dash else None
        if first is None or (dash and last is None):
            special = " (L, W and # are not supported here)" if set(item.upper()) & set("LW#") else ""
            return f"{name} '{item}' is outside {allowed}{special}"
        if last is not None and last < first:
            return f"{name} range '{base}' runs backwards; write it lowest first"
    return None


def aws_cron_problem(expression: str) -> str | None:
    """Why EventBridge / Application Auto Scaling would reject `expression` (None when valid)."""
    fields = expression.split()
    if len(fields) != 6:
        return f"'{expression}' has {len(fields)} fields, needs 6: {_CRON_SHAPE}"
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(value, name, low, high, names)
        if problem:
            return f"'{expression}': {problem}; {_CRON_SHAPE}"
    if (fields[2] == "?") == (fields[4] == "?"):
        return (
            f"'{expression}': exactly one of day-of-month and day-of-week must be '?' (AWS rejects both or neither),"
            " e.g. '0 19 ? * MON-FRI *' or '0 19 1 * ? *'"
        )
    if fields[5] != "*":
        return f"'{expression}': year must be '*' (the schedule repeats; an Auto Scaling group recurrence has no year)"
    return None


def weekly_times(expression: str) -> list[int] | None:
    """Minutes after Monday 00:00 UTC at which a valid AWS cron fires in a week, in order; None unless it
    fires on fixed days of the week at one fixed minute and hour (``M H ? * DAYS *`` or ``M H * * ? *``)."""
    minute, hour, day_of_month, month, day_of_week, _ = expression.split()
    if not (minute.isdigit() and hour.isdigit()) or day_of_month not in ("*", "?") or month != "*":
        return None
    names = _CRON_FIELDS[4][3]
    days: set[int] = set()  # AWS numbering: 1 = SUN ... 7 = SAT
    for item in ("1-7" if day_of_week in ("*", "?") else day_of_week).split(","):
        start, _, end = item.partition("-")
        first = _cron_value(start, 1, 7, names)
        last = _cron_value(end, 1, 7, names) if end else first
        assert first is not None and last is not None, f"not a valid AWS cron: {expression!r}"
        days |= set(range(first, last + 1))
    return sorted(((day - 2) % 7) * 1440 + int(hour) * 60 + int(minute) for day in days)


DEFAULT_SCALE_DOWN_CRON = "0 19 ? * MON-FRI *"


class OffHours(BaseModel):
    """Scale in at ``scale_down_cron`` and back at ``scale_up_cron`` (AWS 6-field cron, UTC),
    validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale_down_cron: str = Field(DEFAULT_SCALE_DOWN_CRON, description="When to scale to zero.")
    scale_up_cron: str = Field("0 7 ? * MON-FRI *", description="When to scale back to min capacity.")

    @field_validator("scale_down_cron", "scale_up_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = aws_cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value
