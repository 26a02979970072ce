"""Writing a report or ruleset where the user asked: stdout, or a file replaced only once complete."""

from __future__ import annotations

import os
import sys


class OutputError(Exception):
    """The output could not be written; ``str(exc)`` names the path and the reason."""


def write_output(text: str, path: str | None) -> None:
    """All or nothing: a file is written beside its target and renamed over it. A device or FIFO
    (/dev/null, /dev/stdout) is written into instead: renaming over it would replace the device."""
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        if os.path.exists(path) and not os.path.isfile(path):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            return
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
