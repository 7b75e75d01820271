"""Stand-alone attacks on saved runs: they compose an attack with its scorer outside a simulation."""
