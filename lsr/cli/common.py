"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations


def add_model_args(parser, required: bool = False) -> None:
    parser.add_argument("--model", default=None, required=required,
                        help="model folder or hub id, any supported format (default: the shared splade-tiny, else a hub model)")
    parser.add_argument("--batch-size", type=int, default=None, help="texts per encoder batch (default: 32)")
    parser.add_argument("--query-max-length", type=int, default=None, help="query tokens kept (default: the model's own)")
    parser.add_argument("--doc-max-length", type=int, default=None, help="document tokens kept (default: the model's own)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def load_model(args, model: str | None = None):
    """The `lsr.SparseModel` named by --model (or `model`), with only the explicitly given options overriding it."""
    from lsr.model import SparseModel
    from lsr.paths import default_model

    return SparseModel.from_pretrained(
        model or args.model or default_model(),
        batch_size=args.batch_size,
        query_max_length=args.query_max_length,
        doc_max_length=args.doc_max_length,
        device=args.device,
        show_progress=True,
    )
