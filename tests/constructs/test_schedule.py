"""llm_hosting_constructs.schedule.weekly_times: when a weekly AWS cron fires, in minutes after Monday 00:00 UTC."""

from __future__ import annotations

import pytest

from llm_hosting_constructs.schedule import weekly_times

DAY = 24 * 60


@pytest.mark.parametrize(
    "cron,expected",
    [
        ("0 7 ? * MON-FRI *", [d * DAY + 7 * 60 for d in range(5)]),
        ("30 22 * * ? *", [d * DAY + 22 * 60 + 30 for d in range(7)]),
        # AWS numbers the days from Sunday: 1 = SUN, 7 = SAT; the week here starts on Monday.
        ("0 6 ? * 1 *", [6 * DAY + 6 * 60]),
        ("0 6 ? * 2-3 *", [6 * 60, DAY + 6 * 60]),
        ("15 0 ? * sat,SUN *", [5 * DAY + 15, 6 * DAY + 15]),
    ],
)
def test_weekly_crons(cron: str, expected: list[int]) -> None:
    assert weekly_times(cron) == expected


@pytest.mark.parametrize("cron", ["0 19 1 * ? *", "0 19,21 ? * MON *", "*/5 7 ? * MON *", "0 7 ? 1-6 MON *"])
def test_other_crons_are_not_weekly(cron: str) -> None:
    assert weekly_times(cron) is None
