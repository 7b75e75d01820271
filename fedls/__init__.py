"""fedls: a federated-learning privacy simulator.

Clients train image classifiers with label smoothing (positive or negative) or another
defense inside a Flower simulation; a curious server attacks their updates and the global
model, and fedls measures utility and leakage per round.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# Library code logs; the CLI decides where the records go.
logging.getLogger(__name__).addHandler(logging.NullHandler())
