"""Reading and writing: artifact schemas and atomic writes (:mod:`~rdpt.io.artifacts`), resume journals
(:mod:`~rdpt.io.journal`), and datasets of questions or candidate responses (:mod:`~rdpt.io.data`)."""
