"""What every stage shares: logging, params loading, one-line errors and a clean exit code.

A stage is a click command wrapped with :func:`stage`::

    python stages/classify.py --help
"""

from __future__ import annotations

import functools
import logging
import os
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


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error (a full disk, a permission, a vanished file), naming the file."""
    import errno

    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    what = err.strerror or str(err) or type(err).__name__
    hint = {
        errno.ENOSPC: " (the disk is full: free space and rerun; finished batches are journaled and outputs are "
                      "written atomically, so nothing partial was left)",
        errno.EDQUOT: " (disk quota exceeded: free space and rerun)",
        errno.EACCES: " (permission denied: check the folder's permissions)",
        errno.EROFS: " (read-only file system)",
    }.get(err.errno, "")
    return " ".join(f"{where + ': ' if where else ''}{what}{hint}".split("\n"))


def _disk_full(err: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT behind ``err`` (its cause chain, or a message saying so), or None."""
    import errno

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        text = str(err)
        if "No space left on device" in text or "file write failed" in text or "Disk quota exceeded" in text:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        err = err.__cause__ or err.__context__
    return None


def stage(fn):
    """Run ``fn`` and turn an :class:`RdptError` (or an :class:`OSError`: a full disk, a permission) into
    ``error: <one line>`` on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        try:
            return fn(*args, **kwargs)
        except RdptError as err:
            click.echo(f"error: {' '.join(str(err).splitlines())}", err=True)
            sys.exit(1)
        except OSError as err:
            click.echo(f"error: {os_error_line(err)}", err=True)
            sys.exit(1)
        except Exception as err:  # a full disk wrapped by a library (torch.save: "file write failed")
            full = _disk_full(err)
            if full is None:
                raise
            click.echo(f"error: {os_error_line(full)}", err=True)
            sys.exit(1)

    return wrapper
