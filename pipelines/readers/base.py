"""What every reader shares: the ingest outcome of a batch, text normalisation, and row collection.

Ingest is accounted like any stage (stage name ``ingest``): every record, line or row that could be a document
enters it and leaves kept, rejected (``ingest:non_html``, ``ingest:empty_text``, ``ingest:too_large``, ...) or
errored (an extraction failure or timeout, a line that is not JSON or not UTF-8). A problem with the file as a
whole (corrupt Parquet footer, truncated gzip) is raised as :class:`FileReadError` after the documents read
before it have been yielded; the shard task records it with the file's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipelines.documents import BASE_SCHEMA, DATE, ERROR, ID, REASON, SOURCE, TEXT, URL, stable_id
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard

INGEST = "ingest"
REJECTED_SCHEMA = BASE_SCHEMA.append(pa.field(REASON, pa.string()))
ERRORED_SCHEMA = BASE_SCHEMA.append(pa.field(ERROR, pa.large_string()))


class FileReadError(RuntimeError):
    """The file itself could not be read (further); documents before the problem were kept."""


@dataclass
class IngestBatch:
    """One batch of ingest outcomes; ``kept`` has the base document schema."""

    kept: pa.Table
    rejected: pa.Table
    errored: pa.Table
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def num_in(self) -> int:
        return self.kept.num_rows + self.rejected.num_rows + self.errored.num_rows


class Reader(Protocol):
    def __call__(self, shard: Shard, spec: InputSpec, batch_size: int) -> Iterator[IngestBatch]: ...


def parse_date(value: Any) -> datetime | None:
    """Best-effort date: ISO 8601 strings and datetimes become UTC; anything else becomes null."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def normalise_text(text: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Unify line endings and drop NUL characters, which break downstream C tools and tokenizers."""
    text = pc.replace_substring(text, "\r\n", "\n")
    text = pc.replace_substring(text, "\r", "\n")
    return pc.replace_substring(text, "\x00", "")


def split_ingested(documents: pa.Table, max_document_bytes: int) -> tuple[pa.Table, pa.Table]:
    """Normalise text, then reject documents that are empty or larger than the limit (vectorised)."""
    text = normalise_text(documents.column(TEXT))
    documents = documents.set_column(documents.schema.get_field_index(TEXT), TEXT, text)
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
    too_large = pc.fill_null(pc.greater(pc.binary_length(text), max_document_bytes), False)
    reasons = pc.if_else(empty, pa.scalar(f"{INGEST}:empty_text"), pc.if_else(too_large, f"{INGEST}:too_large", None))
    rejected_mask = pc.is_valid(reasons)
    kept = documents.filter(pc.invert(rejected_mask))
    rejected = documents.filter(rejected_mask).append_column(REASON, reasons.filter(rejected_mask))
    return kept, rejected


class RowCollector:
    """Collects documents read one at a time (WARC records, JSONL lines) and emits them as batches."""

    def __init__(self, shard: Shard, spec: InputSpec, batch_size: int) -> None:
        self.shard = shard
        self.spec = spec
        self.batch_size = batch_size
        self.counters: dict[str, int] = {}
        self._rows: dict[str, list[Any]] = {name: [] for name in (ID, TEXT, SOURCE, URL, DATE)}
        self._outcome: list[tuple[str, str] | None] = []

    def __len__(self) -> int:
        return len(self._outcome)

    def count(self, counter: str, amount: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + amount

    def add(
        self,
        position: int | str,
        text: str | None,
        url: str | None = None,
        date: Any = None,
        *,
        doc_id: str | None = None,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Add one document; ``reason`` rejects it (a rule name), ``error`` marks it errored."""
        self._rows[ID].append(doc_id or stable_id(self.shard.source, self.shard.key, position))
        self._rows[TEXT].append(text)
        self._rows[SOURCE].append(self.shard.source)
        self._rows[URL].append(url)
        self._rows[DATE].append(parse_date(date))
        if error is not None:
            self._outcome.append((ERROR, error))
        elif reason is not None:
            self._outcome.append((REASON, f"{INGEST}:{reason}"))
        else:
            self._outcome.append(None)

    def flush(self) -> IngestBatch:
        """Build the batch's tables and reset; kept text is normalised and empty documents rejected."""
        table = pa.Table.from_pydict(self._rows, schema=BASE_SCHEMA)
        decided = pa.array([outcome is not None for outcome in self._outcome], pa.bool_())
        kept, rejected = split_ingested(table.filter(pc.invert(decided)), self.spec.max_document_bytes)
        reasons = [o[1] for o in self._outcome if o is not None and o[0] == REASON]
        errors = [o[1] for o in self._outcome if o is not None and o[0] == ERROR]
        is_reason = pa.array([o is not None and o[0] == REASON for o in self._outcome], pa.bool_())
        is_error = pa.array([o is not None and o[0] == ERROR for o in self._outcome], pa.bool_())
        early_rejected = table.filter(is_reason).append_column(REASON, pa.array(reasons, pa.string()))
        errored = table.filter(is_error).append_column(ERROR, pa.array(errors, pa.large_string()))
        batch = IngestBatch(
            kept=kept,
            rejected=pa.concat_tables([early_rejected, rejected]),
            errored=errored,
            counters=self.counters,
        )
        self._rows = {name: [] for name in self._rows}
        self._outcome = []
        self.counters = {}
        return batch
