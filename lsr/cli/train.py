"""`lsr train`: train a SPLADE-style encoder from a config file."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a SPLADE-style encoder from a YAML/TOML config (see docs/training.md)")
    p.add_argument("--config", required=True, help="YAML, TOML or JSON training config")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr.training.cli import run_train

    return run_train(args.config)
