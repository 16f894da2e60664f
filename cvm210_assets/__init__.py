"""cvm210: CVM's daily fund reports as versioned bronze/silver/gold Delta tables."""

__version__ = "0.1.0"

# Bump when a transform's output changes for the same input: every month is then reprocessed
# instead of being skipped as unchanged. Recorded on every row as `versao_pipeline`.
PIPELINE_VERSION = "3"
