"""Provenance of each traced sentence: segment it, score it under each model, classify it, calibrate the rule.

Modules: :mod:`~rdpt.provenance.segment`, :mod:`~rdpt.provenance.score`, :mod:`~rdpt.provenance.classify`,
:mod:`~rdpt.provenance.calibrate`.
"""

# The three models whose probabilities the rule compares, in the order of every table.
ROLES = ("teacher", "student", "distilled")
