"""What every stage shares: logging, params loading, one-line errors and a clean exit code.

A stage is a click command wrapped with :func:`stage`::

    python stages/classify.py --help
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from rdpt import RdptError

params_option = click.option(
    "--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
    help="Params file (validated: unknown keys and bad values are errors).",
)

journal_option = click.option(
    "--journal-dir", default=".rdpt/journal", show_default=True, envvar="RDPT_JOURNAL_DIR",
    help="Where finished batches are journaled so a killed run resumes (outside DVC's outs; deleted on success).",
)


def stage(fn):
    """Run ``fn`` and turn an :class:`RdptError` into ``error: <one line>`` on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        try:
            return fn(*args, **kwargs)
        except RdptError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)

    return wrapper
