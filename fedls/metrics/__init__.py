"""Utility and leakage metrics."""
