"""The ``vmsentry`` command: the verbs are listed in ``vmsentry.commands``; each verb's module is imported
only when it runs, so ``vmsentry --help`` starts fast."""

from __future__ import annotations

import gc
import os
import sys
import traceback

from vmsentry.commands import COMMANDS, create_command
from vmsentry.commands.base import EXIT_USAGE, FatalError, Parser, split_verb, verb_parser

DESCRIPTION = (
    "Can something inside a VM reach my host, my other VMs or my LAN? vmsentry discovers how every VM is "
    "connected, audits it and says what to change."
)


def build_parser() -> Parser:
    """The top-level parser: --version and the list of verbs (each verb parses its own arguments)."""
    from vmsentry import __version__

    parser = verb_parser("vmsentry", DESCRIPTION, COMMANDS, "VERB")
    parser.add_argument("--version", action="version", version=f"vmsentry {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an unexpected error, print the Python traceback too (also VMSENTRY_DEBUG=1)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: the verb's (0, 1, 2; see each verb's --help); 3 for a usage or fatal error, an
    unexpected one included: it is one line on stderr (the traceback only with --debug), never exit 1,
    which would read as "findings"."""
    parser = build_parser()
    args = sys.argv[1:] if argv is None else list(argv)
    verb, rest = split_verb(parser, args)
    debug = "--debug" in args[: len(args) - len(rest)] or os.environ.get("VMSENTRY_DEBUG") == "1"
    if verb is None:
        parser.print_help()
        return EXIT_USAGE
    # A scan builds millions of small acyclic objects (elements, findings, dicts): the cyclic garbage
    # collector's passes over them cost about 40 % of a 10,000-VM scan and free nothing. Reference
    # counting still frees everything; this process is short-lived.
    gc.disable()
    try:
        code = create_command(verb).main(rest)
        _flush_stdout()
        return code
    except KeyboardInterrupt:
        print("vmsentry: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        print(f"vmsentry: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # the last line of defence: a bug must not print a traceback or exit 1
        from vmsentry.report.output import OutputError

        if isinstance(exc, OutputError):
            print(f"vmsentry: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        if debug:
            traceback.print_exc()
        where = _innermost_vmsentry_frame(exc)
        print(
            f"vmsentry: internal error in {verb}: {type(exc).__name__}{where} (please report it; "
            f"vmsentry --debug {verb} ... shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _one_line(exc: Exception) -> str:
    from vmsentry.model.text import printable, redact_credentials  # here: model costs --help start-up time

    return printable(redact_credentials(str(exc)))


def _flush_stdout() -> None:
    """Flush here, where a full device or a closed pipe can still be reported as one line."""
    from vmsentry.report.output import write_stdout

    write_stdout("")


def _innermost_vmsentry_frame(exc: BaseException) -> str:
    """`` at module.py:123`` for the deepest frame in vmsentry's own code: enough to find the bug, and
    unlike the exception's message it carries no text from the input (which may hold a secret)."""
    place = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if f"{os.sep}vmsentry{os.sep}" in filename:
            place = f" at {os.path.basename(filename)}:{line}"
    return place
