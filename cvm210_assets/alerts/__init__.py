"""Outflow alerts: rules over a month's flows, and their delivery to the advisors who watch."""
