"""Writing a report or ruleset where the user asked: stdout, or a file replaced only once complete.

vmsentry runs as root, often in folders other users can write to (``/tmp``, a shared report folder), so
the file is written the way that cannot be turned against it (model/atomic_file.py, shared with the
behaviour model files):

* the temporary file is made by ``mkstemp`` (a random name, ``O_CREAT|O_EXCL``, mode 0600): a link or
  file planted under a predictable name cannot redirect the write;
* it is renamed over the target (``rename`` replaces a symbolic link itself, it never writes through
  it), so a link planted at the target path is replaced, not followed;
* an existing report keeps its mode (a 0600 report stays 0600); a new one gets 0666 less the umask, as
  the shell's ``>`` would;
* the temporary file is removed when anything goes wrong, an interrupt (Ctrl-C) included: nothing is left
  half-written.

A character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe a user set up) is written
into instead: renaming over it would replace the device. A block device or a folder is refused.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO, TextIO

from vmsentry.model.atomic_file import new_file_mode, replace_file


class OutputError(Exception):
    """The output could not be written; ``str(exc)`` names the path and the reason."""


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_stdout(text: str | bytes) -> None:
    """``text`` to standard output; a full device or a closed pipe is an ``OutputError``, not a traceback."""
    try:
        try:
            if isinstance(text, bytes):  # a PDF: as it is
                sys.stdout.flush()
                sys.stdout.buffer.write(text)
            else:
                sys.stdout.write(text)
        except UnicodeEncodeError:
            # a terminal whose encoding cannot show a name: show it escaped rather than fail
            sys.stdout.flush()
            sys.stdout.buffer.write(text.encode(sys.stdout.encoding or "utf-8", "backslashreplace"))
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()
    except OSError as exc:
        raise OutputError(f"standard output: cannot write: {_reason(exc)}") from None


def _reader_gone() -> None:
    """The reader went away (| head): what it wanted it has; say nothing more, as cat does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def write_output(text: str | bytes, path: str | None) -> None:
    """All or nothing: ``text`` (UTF-8, or bytes as they are) to ``path`` (see the module text), or to stdout
    when ``path`` is None."""
    if path is None:
        write_stdout(text)
        return
    data = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    _write_path(path, lambda fh: fh.write(data))


def write_output_with(fill: Callable[[TextIO], object], path: str | None) -> None:
    """As ``write_output`` for an output too big to hold in memory: ``fill(stream)`` writes the text (UTF-8)
    into stdout or into the temporary file that replaces ``path`` once complete."""
    if path is None:
        try:
            fill(sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            _reader_gone()
        except OSError as exc:
            raise OutputError(f"standard output: cannot write: {_reason(exc)}") from None
        return

    def fill_bytes(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="backslashreplace", newline="")
        fill(text)
        text.flush()
        text.detach()

    _write_path(path, fill_bytes)


def _write_path(path: str, fill: Callable[[BinaryIO], object]) -> None:
    try:
        target = os.stat(path)  # follows links: /dev/stdout is one
    except FileNotFoundError:
        target = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {_reason(exc)}") from None
    if target is not None and (stat.S_ISCHR(target.st_mode) or stat.S_ISFIFO(target.st_mode)):
        _write_into(path, fill)
        return
    if target is not None and not stat.S_ISREG(target.st_mode):
        kind = "a folder" if stat.S_ISDIR(target.st_mode) else "not a regular file"
        raise OutputError(f"{path}: cannot write: {kind}")
    _replace(path, fill)


def _write_into(path: str, fill: Callable[[BinaryIO], object]) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {_reason(exc)}") from None


def _replace(path: str, fill: Callable[[BinaryIO], object]) -> None:
    try:
        replace_file(path, fill)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {_reason(exc)}") from None


def open_append(path: str):
    """``path`` opened to add lines at its end (``-o`` with ``--follow``, the watcher's log), created with
    0666 less the umask if missing. A symbolic link at ``path`` is refused rather than followed (another
    user could point it at a file root should not grow), a folder or block device too; a FIFO or character
    device is written into. Returns a binary file object; ``OutputError`` says why not."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, new_file_mode())
    except OSError as exc:
        reason = "a symbolic link" if exc.errno == 40 else _reason(exc)  # ELOOP: O_NOFOLLOW met a link
        raise OutputError(f"{path}: cannot write: {reason}") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        os.close(fd)
        raise OutputError(f"{path}: cannot write: not a regular file")
    return os.fdopen(fd, "ab", buffering=0)
