"""Leakage observers of the curious server: each composes an attack with its scorer."""
