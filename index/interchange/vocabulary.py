"""Token strings for term ids: every interchange format keys weights by token, our indexes by term id.

A vocabulary comes from (first that applies): an explicit list of tokens; a file (`.txt`: one token
per line, `.json`: a list of tokens or a {token: id} map such as a WordPiece `vocab.json`, `.npz`:
an lsr vectors file whose metadata holds the `vocabulary`, as the harness stores BM25's); a tokenizer
(model folder or hub id); else the model recorded in the index manifest. It is checked against the
index: same size, and the same tokenizer fingerprint when the index records one.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path


class VocabularyError(ValueError):
    """The vocabulary is missing, malformed, or not the index's."""


class Vocabulary:
    """Term id -> token string and back; `source` says where the tokens came from (for messages)."""

    def __init__(self, tokens, source: str):
        self.tokens = [str(token) for token in tokens]
        self.source = source
        self._ids: dict[str, int] = {}
        for term, token in enumerate(self.tokens):
            if token in self._ids:
                raise VocabularyError(f"{source}: token {token!r} appears twice (ids {self._ids[token]} and {term})")
            self._ids[token] = term

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, term: int) -> str:
        return self.tokens[term]

    def get(self, token: str) -> int | None:
        """Term id of `token`, or None when it is not in the vocabulary."""
        return self._ids.get(token)

    @cached_property
    def fingerprint(self) -> str:
        """The tokenizer fingerprint this vocabulary would have (`lsr.encoder.tokenizer_fingerprint`)."""
        pairs = sorted(self._ids.items())
        return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def tokens_of_tokenizer(tokenizer, source: str) -> Vocabulary:
    vocab = tokenizer.get_vocab()
    tokens: list = [None] * len(vocab)
    for token, term in vocab.items():
        if not 0 <= term < len(tokens):
            raise VocabularyError(f"{source}: tokenizer ids are not contiguous (token {token!r} has id {term})")
        tokens[term] = token
    return Vocabulary(tokens, f"tokenizer {source}")


def load_vocabulary(source) -> Vocabulary:
    """A `Vocabulary` from a Vocabulary, a list of tokens, a file (.txt / .json / .npz) or a tokenizer."""
    if isinstance(source, Vocabulary):
        return source
    if isinstance(source, (list, tuple)):
        return Vocabulary(source, "the given token list")
    if hasattr(source, "get_vocab"):
        return tokens_of_tokenizer(source, getattr(source, "name_or_path", type(source).__name__))
    path = Path(source)
    if path.is_file():
        return _vocabulary_file(path)
    from lsr.encoder import load_tokenizer

    try:
        tokenizer = load_tokenizer(source)
    except OSError as error:
        raise VocabularyError(f"{source}: neither a vocabulary file nor a loadable tokenizer ({error})") from None
    return tokens_of_tokenizer(tokenizer, str(source))


def _vocabulary_file(path: Path) -> Vocabulary:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from lsr.vectors import load_vectors

        _, _, metadata = load_vectors(path)
        tokens = metadata.get("vocabulary")
        if not isinstance(tokens, list):
            raise VocabularyError(f"{path}: vectors file has no 'vocabulary' in its metadata")
        return Vocabulary(tokens, str(path))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise VocabularyError(f"{path}: not valid JSON ({error})") from None
        if isinstance(data, dict):
            tokens: list = [None] * len(data)
            for token, term in data.items():
                if not isinstance(term, int) or not 0 <= term < len(data) or tokens[term] is not None:
                    raise VocabularyError(f"{path}: token {token!r} has id {term!r}; ids must be 0..{len(data) - 1}, once each")
                tokens[term] = token
            return Vocabulary(tokens, str(path))
        if isinstance(data, list) and all(isinstance(token, str) for token in data):
            return Vocabulary(data, str(path))
        raise VocabularyError(f"{path}: expected a list of tokens or a {{token: id}} object")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise VocabularyError(f"{path}: not UTF-8 text ({error})") from None
    if lines and lines[-1] == "":
        lines.pop()
    return Vocabulary(lines, str(path))


def loadable_model(candidates) -> str | None:
    """The first of `candidates` (model names or paths) that names something loadable here: an existing
    folder, or a hub id of the form owner/name (a bare name such as "splade-tiny" is only a label)."""
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            if Path(candidate).is_dir() or (candidate.count("/") == 1 and not os.path.exists(candidate)):
                return candidate
    return None


def recorded_model(index) -> str | None:
    """The model the index manifest records, when it is loadable here (see `loadable_model`)."""
    candidates = []
    manifest_file = Path(index.path) / "manifest.json" if getattr(index, "path", None) else None
    if manifest_file is not None and manifest_file.is_file():
        model = json.loads(manifest_file.read_text(encoding="utf-8")).get("model")
        if isinstance(model, dict):
            candidates += [model.get("path"), model.get("name_or_path"), model.get("name")]
        elif isinstance(model, str):
            candidates.append(model)
    candidates.append(getattr(index, "model_name", None))
    return loadable_model(candidates)


def index_vocabulary(index, vocabulary=None, model=None) -> Vocabulary:
    """The vocabulary of `index`: `vocabulary` if given, else `model`'s tokenizer, else the recorded model's.

    Raises `VocabularyError` when none is available or it is not the index's (size or fingerprint)."""
    if vocabulary is not None:
        resolved = load_vocabulary(vocabulary)
    elif model is not None:
        resolved = load_vocabulary(model)
    else:
        recorded = recorded_model(index)
        if recorded is None:
            raise VocabularyError(
                f"{getattr(index, 'path', None) or 'the index'}: no vocabulary given and the index records no loadable "
                f"model (model_name={getattr(index, 'model_name', None)!r}); pass a vocabulary file or a model / tokenizer"
            )
        resolved = load_vocabulary(recorded)
    check_vocabulary(resolved, index.vocab_size, getattr(index, "tokenizer_fingerprint", None),
                     str(getattr(index, "path", None) or "the index"))
    return resolved


def import_vocabulary(where, recorded_model_name, vocabulary=None, model=None) -> Vocabulary:
    """The vocabulary for importing the file(s) at `where`: `vocabulary`, else `model`'s tokenizer, else
    the model the file's exporter recorded (`recorded_model_name`, when loadable)."""
    if vocabulary is not None or model is not None:
        return load_vocabulary(vocabulary if vocabulary is not None else model)
    recorded = loadable_model([recorded_model_name])
    if recorded is None:
        raise VocabularyError(f"{where}: no vocabulary given and no loadable model recorded ({recorded_model_name!r}); "
                              "pass a vocabulary file or a model / tokenizer")
    return load_vocabulary(recorded)


def check_vocabulary(vocabulary: Vocabulary, vocab_size: int, fingerprint: str | None, what: str) -> None:
    if len(vocabulary) != vocab_size:
        raise VocabularyError(
            f"{vocabulary.source} has {len(vocabulary)} tokens but {what} has vocabulary size {vocab_size}: "
            "not the index's vocabulary"
        )
    if fingerprint and vocabulary.fingerprint != fingerprint:
        raise VocabularyError(
            f"{vocabulary.source} has fingerprint {vocabulary.fingerprint} but {what} was built with tokenizer "
            f"fingerprint {fingerprint}: not the index's vocabulary"
        )
