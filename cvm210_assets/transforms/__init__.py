"""Pure PySpark transforms: DataFrame in, DataFrame out, the same locally and on Databricks."""
