"""What every verb shares: the parser that exits 3 on usage errors, the ``Command`` base class, the fatal
error every verb may raise, and writing its output. Only argparse is imported here: ``--help`` stays fast."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

EXIT_USAGE = 3


class Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (CONTRACTS.md), not argparse's 2, which means 'incomplete input'."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"vmsentry: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class FatalError(Exception):
    """Nothing useful can be done: ``main`` prints ``vmsentry: <message>`` and exits 3."""


class CommandInfo(NamedTuple):
    """Where a verb lives: its module is imported only when the verb runs (or its --help is asked for)."""

    module_path: str
    class_name: str
    summary: str


class Command:
    """One verb. A subclass's docstring is its --help description; it adds its options in ``add_options`` and
    works in ``run``. A verb with sub-verbs (``policy``) names their registry in ``subcommands``."""

    subcommands: dict[str, CommandInfo] | None = None

    def __init__(self, name: str, summary: str) -> None:
        self.name = name  # as typed after "vmsentry": "scan", "policy compile"
        self.summary = summary

    @property
    def description(self) -> str:
        return " ".join((type(self).__doc__ or "").split())

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def parser(self) -> Parser:
        parser = Parser(prog=f"vmsentry {self.name}", description=self.description)
        self.add_options(parser)
        return parser

    def main(self, argv: list[str]) -> int:
        # intermixed: options and paths in any order (`detect a.pcap --format json b.pcap`)
        return self.run(self.parser().parse_intermixed_args(argv))


class CommandGroup(Command):
    """A verb with sub-verbs (``policy``, ``audit``, ``incidents``): its --help lists them, each parses its own options."""

    subcommands: dict[str, CommandInfo]

    def parser(self) -> Parser:
        return verb_parser(f"vmsentry {self.name}", self.description, self.subcommands, "SUBVERB")

    def subcommand(self, verb: str) -> Command:
        return create_command(self.subcommands, verb, prefix=f"{self.name} ")

    def main(self, argv: list[str]) -> int:
        verb, rest = split_verb(self.parser(), argv)
        if verb is None:
            names = ", ".join(self.subcommands)
            print(f"vmsentry: {self.name}: give a sub-verb: {names} (see --help)", file=sys.stderr)
            return EXIT_USAGE
        return self.subcommand(verb).main(rest)


def create_command(registry: dict[str, CommandInfo], name: str, prefix: str = "") -> Command:
    from importlib import import_module

    info = registry[name]
    cls = getattr(import_module(info.module_path), info.class_name)
    return cls(f"{prefix}{name}", info.summary)


def verb_parser(prog: str, description: str, registry: dict[str, CommandInfo], metavar: str) -> Parser:
    """A parser whose help lists the verbs of ``registry``; each verb's own options live in its command."""
    parser = Parser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="verb", metavar=metavar, parser_class=Parser)
    for name, info in registry.items():
        sub.add_parser(name, help=info.summary, add_help=False)
    return parser


def attach_verbs(
    parser: argparse.ArgumentParser, registry: dict[str, CommandInfo], metavar: str, prefix: str = ""
) -> None:
    """Every verb of ``registry`` under ``parser`` with all its options and sub-verbs: the whole command line
    in one parser, for shell completion and the man page. It imports every verb, so a run never builds it."""
    sub = parser.add_subparsers(dest=f"{metavar.lower()}{prefix.count(' ')}", metavar=metavar, parser_class=Parser)
    for name in registry:
        command = create_command(registry, name, prefix)
        child = sub.add_parser(name, help=command.summary, description=command.description)
        if command.subcommands:
            attach_verbs(child, command.subcommands, "SUBVERB", prefix=f"{command.name} ")
        else:
            command.add_options(child)


def split_verb(parser: Parser, argv: list[str]) -> tuple[str | None, list[str]]:
    """The verb (None if none was given) and the arguments after it. The options before the verb (-h,
    --version) take no value, so the verb is the first argument not starting with '-'. argparse's
    subparsers cannot parse intermixed, so each verb parses its own arguments."""
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    return parser.parse_args(argv[: at + 1]).verb, argv[at + 1 :]


# `ip netns` names are files under /var/run/netns: one path component, no "/" and not "." or ".."; we also
# refuse what no tool creates (white space, control characters), since the name also builds state paths.
NETNS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}")


def netns_name(text: str) -> str:
    """An argparse type for a network namespace name (``ip netns`` names are single path components)."""
    if not NETNS_RE.fullmatch(text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a network namespace name (1-64 of A-Z a-z 0-9 _ . @ + -, not starting with . - @ +)"
        )
    return text


def seconds(text: str) -> float:
    """An argparse type for a duration: a finite number of seconds above 0 ("nan", "inf", 0 and negative
    numbers are usage errors, refused before anything is done)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds above 0")
    return value


@contextmanager
def reraise_as(target: type[Exception], *errors: type[Exception]) -> Iterator[None]:
    """Turn a library's error into the command's (same message, no traceback chained)."""
    try:
        yield
    except errors as exc:
        raise target(str(exc)) from None


def write(text: str, path: str | None, error: type[Exception] = FatalError) -> None:
    """The output to stdout or, atomically, to ``path``; a failure becomes ``error``."""
    from vmsentry.report.output import OutputError, write_output

    with reraise_as(error, OutputError):
        write_output(text, path)


def add_report_output(p: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    """``--format`` (read it with ``default_format``) and ``-o/--output`` (write with ``write``)."""
    p.add_argument(
        "--format", choices=formats, default=None, help="output format (default: text on a terminal, json otherwise)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")


def default_format(args: argparse.Namespace) -> str:
    """text on a terminal, json into a pipe or a file."""
    return args.format or ("text" if (args.output is None and sys.stdout.isatty()) else "json")


def plain_terminal() -> bool:
    """The user asked for plain output: ``NO_COLOR`` set to anything (no-color.org) or ``TERM=dumb``."""
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def use_color(stream=None) -> bool:
    """ANSI colour on ``stream`` (stdout by default): only on a terminal, and not when ``plain_terminal``."""
    stream = sys.stdout if stream is None else stream
    return not plain_terminal() and stream.isatty()


def use_progress_bar() -> bool:
    """A live progress bar on stderr: only on a terminal that can redraw a line (not ``TERM=dumb``). Under
    ``NO_COLOR`` it is drawn without colour (no-color.org: the variable turns colour off, nothing else)."""
    return os.environ.get("TERM") != "dumb" and sys.stderr.isatty()
