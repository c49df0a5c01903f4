"""Index interchange with other engines: CIFF (PISA, BMP, Anserini, Terrier), Anserini / Lucene
JsonVectorCollection, Seismic JSONL, OpenSearch / Elasticsearch bulk files and query DSL.

`export_index(index, format, output)` and `import_index(format, input, output)` dispatch to the
per-format functions; see docs/interchange.md for the quantisation each format implies and what each
engine was checked to answer.
"""

from __future__ import annotations

from .anserini import export_anserini, export_anserini_queries, import_anserini, quantize_queries
from .ciff import CiffReader, ciff_summary, export_ciff, import_ciff
from .common import InterchangeError
from .opensearch import (export_opensearch, feature_field_value, feature_names, mapping, query_body,
                         query_vectors_as_features)
from .postings import TermPostings, load_index, term_postings
from .seismic import export_seismic, export_seismic_queries, import_seismic
from .vocabulary import Vocabulary, VocabularyError, index_vocabulary, load_vocabulary

EXPORT_FORMATS = ("ciff", "anserini", "seismic", "opensearch", "elasticsearch")
IMPORT_FORMATS = ("ciff", "anserini", "seismic")


def export_index(index, format: str, output, vocabulary=None, model=None, **options) -> dict:
    """Export `index` (an index object or folder) to `output` in `format` (one of EXPORT_FORMATS)."""
    if format == "ciff":
        return export_ciff(index, output, vocabulary, model, **options)
    if format == "anserini":
        return export_anserini(index, output, vocabulary, model, **options)
    if format == "seismic":
        return export_seismic(index, output, vocabulary, model, **options)
    if format in ("opensearch", "elasticsearch"):
        return export_opensearch(index, output, vocabulary, model, engine=format, **options)
    raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {format!r}")


def import_index(format: str, input, output, vocabulary=None, model=None, **options):
    """Read `input` in `format` (one of IMPORT_FORMATS) into one of our indexes at `output`."""
    if format == "ciff":
        return import_ciff(input, output, vocabulary, model, **options)
    if format == "anserini":
        return import_anserini(input, output, vocabulary, model, **options)
    if format == "seismic":
        return import_seismic(input, output, vocabulary, model, **options)
    raise ValueError(f"import format must be one of {IMPORT_FORMATS}, got {format!r}")


__all__ = [
    "EXPORT_FORMATS", "IMPORT_FORMATS", "CiffReader", "InterchangeError", "TermPostings", "Vocabulary",
    "VocabularyError", "ciff_summary", "export_anserini", "export_anserini_queries", "export_ciff", "export_index",
    "export_opensearch", "export_seismic", "export_seismic_queries", "feature_field_value", "feature_names",
    "import_anserini", "import_ciff", "import_index", "import_seismic", "index_vocabulary", "load_index",
    "load_vocabulary", "mapping", "query_body", "query_vectors_as_features", "quantize_queries", "term_postings",
]
