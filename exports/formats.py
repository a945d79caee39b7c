"""The byte layouts trainers read, and the special tokens each one expects around a document.

**Megatron** (megatron-core ``IndexedDataset``, the ``MMIDIDX`` layout): ``PREFIX.bin`` is every document's tokens
back to back; ``PREFIX.idx`` is the header ``b"MMIDIDX\\x00\\x00"``, version ``<Q 1``, the token dtype code ``<B``,
the sequence count ``<Q`` and the document-index count ``<Q``, then the sequence lengths (int32), the sequence
byte pointers (int64) and the document indices (int64, ``0 .. N``: one sequence per document). The token dtype is
megatron-core's ``DType.optimal_dtype(vocab_size)``: uint16 below 65,500 ids, else int32. A document is framed
the way Megatron-LM's ``preprocess_data.py --append-eod`` frames it with a Hugging Face Llama 3 tokenizer:
``<|begin_of_text|>`` (the tokenizer's own template) + text + ``<|end_of_text|>`` (the EOD that
``--reset-attention-mask`` / ``--eod-mask-loss`` look for).

**datatrove / nanotron** (datatrove ``DocumentTokenizer`` output, read by ``DatatroveFileDataset`` /
``DatatroveFolderDataset`` and nanotron's ``Nanoset``): ``NAME.ds`` is the tokens (little-endian uint16, or uint32
when the vocabulary has more than 65,536 ids); ``NAME.ds.index`` the document ends in tokens (uint64, cumulative);
``NAME.ds.metadata`` three lines (``tokenizer|token size``, token count, the count in words). A document is text +
EOS, what ``DocumentTokenizer(eos_token=...)`` writes (its post-processor replaces the BOS template).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .location import read_bytes

MEGATRON = "megatron"
DATATROVE = "datatrove"
FORMATS = (MEGATRON, DATATROVE)

MEGATRON_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
#: megatron-core's ``DType`` codes (``indexed_dataset.DType``).
MEGATRON_DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
_MEGATRON_HEADER_BYTES = len(MEGATRON_HEADER) + 8 + 1 + 8 + 8


@dataclass(frozen=True)
class Framing:
    """Which special tokens surround every document in a format."""

    bos: bool
    eos: bool

    @property
    def extra_tokens(self) -> int:
        return int(self.bos) + int(self.eos)


FRAMING = {MEGATRON: Framing(bos=True, eos=True), DATATROVE: Framing(bos=False, eos=True)}


def token_dtype(export_format: str, vocab_size: int) -> np.dtype:
    """The on-disk token type each reader expects for a vocabulary of ``vocab_size`` ids."""
    if export_format == MEGATRON:
        return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)  # DType.optimal_dtype
    if export_format == DATATROVE:
        return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)
    raise ValueError(f"unknown export format {export_format!r}; expected one of {FORMATS}")


# -- Megatron ------------------------------------------------------------------------------------------------


def megatron_index_bytes(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``.idx`` for documents of ``lengths`` tokens (one sequence each) stored as ``dtype``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    count = len(lengths)
    pointers = np.zeros(count, dtype=np.int64)
    if count:
        np.cumsum(lengths[:-1] * np.dtype(dtype).itemsize, out=pointers[1:])
    header = (
        MEGATRON_HEADER
        + struct.pack("<Q", MEGATRON_VERSION)
        + struct.pack("<B", MEGATRON_DTYPE_CODES[np.dtype(dtype)])
        + struct.pack("<Q", count)
        + struct.pack("<Q", count + 1)
    )
    return b"".join(
        (
            header,
            lengths.astype("<i4").tobytes(),
            pointers.astype("<i8").tobytes(),
            np.arange(count + 1, dtype="<i8").tobytes(),
        )
    )


def read_megatron_index(path: str | Path) -> tuple[np.dtype, np.ndarray]:
    """(token dtype, sequence lengths) of a ``.idx`` (a local path or an fsspec URL); a malformed index is a
    ``ValueError`` naming the file."""
    data = read_bytes(path)
    if len(data) < _MEGATRON_HEADER_BYTES or not data.startswith(MEGATRON_HEADER):
        raise ValueError(f"{path}: not a Megatron MMIDIDX index")
    version, code, count, documents = struct.unpack_from("<QBQQ", data, len(MEGATRON_HEADER))
    codes = {v: k for k, v in MEGATRON_DTYPE_CODES.items()}
    expected = _MEGATRON_HEADER_BYTES + count * (4 + 8) + documents * 8
    if version != MEGATRON_VERSION or code not in codes or len(data) != expected:
        raise ValueError(f"{path}: unexpected version, dtype code or size in a Megatron index")
    lengths = np.frombuffer(data, dtype="<i4", count=count, offset=_MEGATRON_HEADER_BYTES).astype(np.int64)
    return codes[code], lengths


# -- datatrove -----------------------------------------------------------------------------------------------


def datatrove_index_bytes(lengths: np.ndarray) -> bytes:
    """The ``.ds.index``: each document's end, in tokens from the file's start (uint64)."""
    return np.cumsum(np.asarray(lengths, dtype=np.uint64), dtype=np.uint64).astype("<u8").tobytes()


def datatrove_metadata(tokenizer_name: str, token_size: int, token_count: int) -> bytes:
    """The ``.ds.metadata`` text ``TokenizedFile.write_final_metadata`` writes."""
    import humanize  # a datatrove dependency

    lines = [f"{tokenizer_name}|{token_size}", str(token_count), humanize.metric(token_count, unit="T")]
    return "\n".join(lines).encode()
