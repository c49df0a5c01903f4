"""The `lsr` command. One module per subcommand, each with `add_parser(subparsers)`; registered below."""

from __future__ import annotations

import argparse
import sys

from . import encode, eval as eval_command, index, search, train

COMMANDS = (encode, index, search, eval_command, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsr", description="learned sparse retrieval engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, TypeError) as error:
        print(f"lsr {args.command}: error: {error}", file=sys.stderr)
        return 2
