"""Analysis of the classified sentences: class shares and position curves (:mod:`~rdpt.analysis.shares`), the
quantified correlation with correctness (:mod:`~rdpt.analysis.stats`), figures, the HTML viewer, and teacher
identification; :mod:`~rdpt.analysis.correlate` is the stage that writes the reports."""
