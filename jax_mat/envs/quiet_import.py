"""Importing the simulators' packages without their import-time notes on the terminal.

JaxMARL prints "Importing submoduled environments..." and "Submoduled environments not found. Skipping
import." with ``print()`` whenever ``jaxmarl.environments`` is imported, and MuJoCo's MJX prints "Failed to
import warp: ..." when its optional GPU backend is absent. Neither is about a jax_mat run, yet they came
before anything of ours on every command. Every jax_mat module that imports JaxMARL, MJX or brax does it
inside ``quiet_import()``.

A ``contextlib.redirect_stdout`` alone does not hold them back: JaxMARL's MABrax module sets ``sys.stdout``
back to ``sys.__stdout__`` while it is imported, so its later prints reach file descriptor 1 directly. The
block therefore also points descriptor 1 at a temporary file, and afterwards restores the descriptor and
whatever ``sys.stdout``/``sys.stderr`` were before (a test's capture, a notebook's stream).

Only standard output is held back, and only while the import runs. Warnings and anything written to
standard error pass as usual; when the import fails, what it printed goes to standard error and the
exception is raised unchanged, so a broken installation still explains itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator

_STDOUT_FD = 1


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """A ``with`` block whose standard output is dropped, unless it raises: then it goes to standard error."""
    streams = sys.stdout, sys.stderr
    captured = io.StringIO()
    with tempfile.TemporaryFile() as fd_capture:
        saved_fd = _point_stdout_fd_at(fd_capture)
        try:
            with contextlib.redirect_stdout(captured):
                yield
        except BaseException:
            _restore(saved_fd, streams)
            fd_capture.seek(0)
            text = fd_capture.read().decode(errors="replace") + captured.getvalue()
            sys.stderr.write(text)
            sys.stderr.flush()
            raise
        _restore(saved_fd, streams)


def _point_stdout_fd_at(file) -> int | None:
    """Points descriptor 1 at ``file``; returns a copy of the old one (None when there is no descriptor 1)."""
    _flush(sys.stdout, sys.__stdout__)  # what was printed before the block still goes to the terminal
    try:
        saved = os.dup(_STDOUT_FD)
    except OSError:
        return None
    os.dup2(file.fileno(), _STDOUT_FD)
    return saved


def _restore(saved_fd: int | None, streams: tuple) -> None:
    _flush(sys.stdout, sys.__stdout__)  # a block-buffered stream still holds what the import printed
    if saved_fd is not None:
        os.dup2(saved_fd, _STDOUT_FD)
        os.close(saved_fd)
    sys.stdout, sys.stderr = streams


def _flush(*streams) -> None:
    for stream in streams:
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or detached stream holds nothing to flush
