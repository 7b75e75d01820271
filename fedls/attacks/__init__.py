"""The curious server's attacks. They see only what the server sees (:mod:`fedls.threat_model`).

* :mod:`fedls.attacks.gradient` — on client updates: label counts, soft labels, features, images.
* :mod:`fedls.attacks.model` — model inversion of the global model with a generative prior.

Scoring lives in :mod:`fedls.metrics`; the server composes attack and scorer in
:mod:`fedls.federation.observers`. This package imports neither.
"""
