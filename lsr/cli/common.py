"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

from lsr.paths import default_model


def add_model_args(parser) -> None:
    parser.add_argument("--model", default=None, help="hub id or local folder (default: the shared splade-tiny, else a hub model)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per encoder batch")
    parser.add_argument("--query-max-length", type=int, default=64, help="query tokens kept")
    parser.add_argument("--doc-max-length", type=int, default=256, help="document tokens kept")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def load_encoder(args):
    from lsr.encoder import SpladeEncoder

    return SpladeEncoder.from_pretrained(
        args.model or default_model(),
        batch_size=args.batch_size,
        query_max_length=args.query_max_length,
        doc_max_length=args.doc_max_length,
        device=args.device,
    )
