"""The `lsr` command. One module per subcommand, each with `add_parser(subparsers)`; registered below."""

from __future__ import annotations

import argparse
import sys

from . import encode, eval as eval_command, index, interchange, search, train

COMMANDS = (encode, index, search, eval_command, train, interchange)


def build_parser() -> argparse.ArgumentParser:
    from lsr import __version__

    parser = argparse.ArgumentParser(prog="lsr", description="learned sparse retrieval engine")
    parser.add_argument("--version", action="version", version=f"lsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"lsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line saying what is wrong; the traceback only when asked for
        if args.debug:
            raise
        hint = "" if isinstance(error, (ValueError, OSError, TypeError)) else " (run with --debug for the traceback)"
        message = str(error) or type(error).__name__
        print(f"lsr {args.command}: error: {message}{hint}", file=sys.stderr)
        return 2
