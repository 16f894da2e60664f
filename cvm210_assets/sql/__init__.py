"""SQL over the lake under the names and statements of the original design: DuckDB by default,
Spark SQL with Delta Lake on request (and on Databricks).

`cvm_p210.gold_cvm210_analytics` and friends are views over the Delta tables' current files
(read through delta-rs' file list and Arrow), so a query sees exactly the committed version.
One module per concern:

- views.py: the original design's extra columns and joined views, defined once for both engines;
- spark.py: those views as Spark SQL DDL, and a statement run on Spark with Delta Lake;
- duckdb_engine.py: the views in DuckDB, time travel, and a statement run there;
- statements.py: the tokenizer, and what DuckDB does not parse, done by delta-rs
  (`lake/maintenance.py`): DESCRIBE HISTORY, OPTIMIZE [ZORDER BY] and RESTORE;
- render.py and charts.py: a result as a text table, CSV or JSON, and as a PNG chart.

What every engine returns and raises is here.
"""

from __future__ import annotations

from typing import Any

Result = tuple[list[str], list[tuple[Any, ...]]]  # column names, rows


class SqlError(ValueError):
    """A statement `cvm210 sql` cannot run, with what it can run instead."""
