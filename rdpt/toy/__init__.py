"""The embedded toy world: a synthetic reasoning task and tiny teacher/student LMs built on CPU.

``toy_world`` makes everything the pipeline needs so that ``dvc repro`` runs end to end in
minutes without downloads; see :mod:`rdpt.toy.world`.
"""

from rdpt.toy.task import boxed_answer, is_correct
from rdpt.toy.world import ROLES, toy_world

__all__ = ["ROLES", "boxed_answer", "toy_world", "is_correct"]
