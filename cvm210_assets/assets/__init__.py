"""Thin assets: each wires resources to a transform and reports what it did."""
