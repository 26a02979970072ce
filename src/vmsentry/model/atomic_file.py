"""Replacing a file only once its new content is complete: the one way every stage writes a named file
(reports through report/output.py, behaviour model files through analyse/behaviour/modelfile.py).

vmsentry runs as root, often in folders other users can write to, so:

* the temporary file is made by ``mkstemp`` in the target's folder (a random name, ``O_CREAT|O_EXCL``,
  mode 0600): a link or file planted under a predictable name cannot redirect the write;
* it is renamed over the target (``rename`` replaces a symbolic link itself, it never writes through
  it), so a link planted at the target path is replaced, not followed;
* an existing file keeps its mode; a new one gets 0666 less the umask, as the shell's ``>`` would;
* the temporary file is removed when anything goes wrong, an interrupt (Ctrl-C) included.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import BinaryIO


def new_file_mode() -> int:
    """0666 less the process's umask: the mode a new file gets."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace_file(path: str, fill: Callable[[BinaryIO], object]) -> None:
    """``fill(fh)`` writes the content into a temporary file beside ``path``, which then replaces ``path``
    (see the module text). Raises ``OSError`` (the temporary file already removed) when it cannot."""
    try:
        current = os.lstat(path)
    except OSError:
        current = None
    # the mode of the file being replaced (not of what a link points to: the link itself is replaced)
    mode = stat.S_IMODE(current.st_mode) if current is not None and stat.S_ISREG(current.st_mode) else None
    import tempfile  # here: the CLI imports report/output.py (and so this) at start-up; most runs write to stdout

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            os.fchmod(fh.fileno(), mode if mode is not None else new_file_mode())
        os.replace(tmp, path)
    except BaseException:  # an interrupt too: never leave the temporary file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
