"""Monthly partitions keyed `YYYY-MM`, in CVM's time zone, from 2005-01 to the current month."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dagster import MonthlyPartitionsDefinition

CVM_TIMEZONE = "America/Sao_Paulo"
FIRST_MONTH = "2005-01"
# Dagster's concurrency pool of every step that takes a month's lock (and of every Spark step):
# with dagster.yaml's `granularity: run` and `default_limit: 1`, one run that writes months at a
# time; the others wait in the queue instead of failing on a lock or starting another JVM.
MONTH_POOL = "cvm210_months"

# end_offset=1 includes the current, incomplete month: CVM publishes it day by day.
monthly_partitions = MonthlyPartitionsDefinition(
    start_date=FIRST_MONTH, timezone=CVM_TIMEZONE, fmt="%Y-%m", end_offset=1
)


@dataclass(frozen=True, order=True)
class Month:
    """A reporting month; `key` is the partition key, `compact` the form in CVM's file names."""

    ano: int
    mes: int

    def __post_init__(self) -> None:
        if not 1 <= self.mes <= 12:
            raise ValueError(f"month out of range in {self.ano}-{self.mes}")

    @classmethod
    def from_key(cls, key: str) -> Month:
        try:
            ano, mes = key.split("-")
            return cls(int(ano), int(mes))
        except ValueError as error:
            raise ValueError(f"partition key {key!r} is not YYYY-MM") from error

    @classmethod
    def of(cls, when: dt.datetime) -> Month:
        """The month `when` falls in on CVM's calendar (São Paulo), whatever its time zone."""
        local = when.astimezone(ZoneInfo(CVM_TIMEZONE))
        return cls(local.year, local.month)

    def shift(self, months: int) -> Month:
        """The month `months` away (negative: earlier)."""
        index = self.ano * 12 + self.mes - 1 + months
        return Month(index // 12, index % 12 + 1)

    def window(self, months: int) -> list[Month]:
        """The `months` months ending in this one, oldest first."""
        return [self.shift(-k) for k in range(months - 1, -1, -1)]

    @property
    def key(self) -> str:
        return f"{self.ano:04d}-{self.mes:02d}"

    @property
    def compact(self) -> str:
        return f"{self.ano:04d}{self.mes:02d}"

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.ano, self.mes, 1)

    @property
    def last_day(self) -> dt.date:
        return dt.date(self.ano, self.mes, calendar.monthrange(self.ano, self.mes)[1])

    def contains(self, day: dt.date) -> bool:
        return (day.year, day.month) == (self.ano, self.mes)

    def __str__(self) -> str:
        return self.key
