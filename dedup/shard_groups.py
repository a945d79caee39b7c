"""Map phases of the exact-key and line dedup stages run per group of consecutive shards, one writer per group.

Why: a map task per input shard writes one file per partition, and every reduce task then reads one file per
shard, so the files of a shuffle grow with shards × partitions; since the partition count grows with the input
too, that is the square of the corpus. A writer per group of ``GROUP_BYTES`` of input (as MinHash's
``signatures``) divides both by the shards in a group.

``GROUP_BYTES``: a group's task holds one shard's columns at a time plus its group's rows. Measured on the 8x
corpus (1 MB shards of ~2,000 short pages): a key row (two key halves, id, source, date, quality, shard) is
0.15 bytes per input byte in Arrow, a line row (hash, count, bucket per distinct line of a shard) 0.21; a
task's peak RSS over a 280 MB group against one shard: URL keys 257 / 133 MB, text keys 295 / 171 MB, lines
577 / 187 MB (every line row distinct; 429 MB when the copies share lines), against the 1.3 GB a 64 MB MinHash
signature group holds. At 256 MiB a reduce task reads one file per 256 MiB of input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refinery.dedup.phases import writer_name
from refinery.pipelines.partitions import groups_by_bytes, input_sizes
from refinery.pipelines.stages import GlobalContext

#: Input bytes per writer of the ``keys`` and ``lines`` phases at most (see the module's docstring).
GROUP_BYTES = 256 * 2**20


def bytes_per_group(total_bytes: int, partition_bytes: int, cap: int) -> int:
    """Input bytes per writer of a map phase run per group of shards: ``cap`` (or ``partition_bytes`` if smaller),
    less when that would leave CPUs idle: the phase keeps at least two groups per CPU of the session (one group
    per shard at most). The rule of MinHash's ``signatures`` and of the ``keys`` and ``lines`` phases alike."""
    from refinery.pipelines.executor import session_resources

    cpus = max(1, int(session_resources().get("CPU", 1)))
    return max(1, min(cap, partition_bytes, -(-total_bytes // (2 * cpus))))


def group_bytes(total_bytes: int, partition_bytes: int) -> int:
    """Input bytes per writer of the ``keys`` and ``lines`` phases (``GROUP_BYTES`` at most)."""
    return bytes_per_group(total_bytes, partition_bytes, GROUP_BYTES)


def shard_group_jobs(
    context: GlobalContext,
    partition_bytes: int,
    sizing: Callable[[int, int], int] | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """One job per group of consecutive shards (sorted shard order): its writer and members (index, path).

    ``sizing(total input bytes, partition_bytes)`` gives the input bytes per group (default :func:`group_bytes`).
    """
    sizes = input_sizes(context)
    groups = groups_by_bytes(sizes, (sizing or group_bytes)(sum(sizes), partition_bytes))
    return [
        {
            "members": [{"shard": i, "path": context.input_path(context.shard_names[i])} for i in group],
            "writer": writer_name(k),
            **extra,
        }
        for k, group in enumerate(groups)
    ]
