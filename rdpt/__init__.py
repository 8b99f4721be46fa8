"""rdpt — trace where each sentence of a distilled reasoning model comes from.

Implements the provenance analysis of arXiv 2512.20908 ("Where Did This Sentence Come From?"):
every sentence of a distilled model's response is scored under the teacher, the original student
and the distilled model, and classified as Shared, Teacher, Student or Boosted.
"""

__version__ = "0.1.0"


class RdptError(Exception):
    """An error a user can act on; stages print it as one line and exit non-zero."""
