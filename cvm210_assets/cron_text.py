"""A schedule's cron in words, so that its description in the UI says when it really fires."""

from __future__ import annotations

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _day(field: str) -> str:
    return DAYS[int(field) % 7]


def _days(field: str) -> str | None:
    if field == "*":
        return "every day"
    if field.isdigit():
        return f"{_day(field)}s"
    if "-" in field and "," not in field:
        first, _, last = field.partition("-")
        if first.isdigit() and last.isdigit():
            return f"{_day(first)} to {_day(last)}"
    if all(part.isdigit() for part in field.split(",")):
        names = [_day(part) for part in field.split(",")]
        return ", ".join(names[:-1]) + f" and {names[-1]}"
    return None


def _zone(timezone: str) -> str:
    return "São Paulo time" if timezone == "America/Sao_Paulo" else timezone


def describe(cron: str, timezone: str) -> str:
    """ "Tuesday to Saturday at 08:30 São Paulo time" for `30 8 * * 2-6`; a cron this does not
    read (steps, lists of hours, days of the month) is quoted as it is."""
    fields = cron.split()
    if len(fields) == 5:
        minute, hour, day_of_month, month, day_of_week = fields
        days = _days(day_of_week)
        if minute.isdigit() and hour.isdigit() and (day_of_month, month) == ("*", "*") and days:
            return f"{days} at {int(hour):02d}:{int(minute):02d} {_zone(timezone)}"
    return f"on cron `{cron}`, {_zone(timezone)}"
