"""The lake: a raw zone of files and the Delta tables, on a local folder or on S3."""
