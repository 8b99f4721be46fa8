"""Sampling responses (:mod:`~rdpt.generation.sample`), the sampling stages ``teach`` and ``generate``
(:mod:`~rdpt.generation.responses`), and math-verify grading with the ``evaluate`` stage
(:mod:`~rdpt.generation.grade`)."""
