"""A Megatron-style data blend from a manifest: ``w1 prefix1 w2 prefix2 ...`` with the weights normalised.

Megatron-LM's ``--data-path`` takes pairs of a weight and a dataset prefix and samples datasets in proportion
to their weights. Refinery's shards are already mixed and shuffled, so each shard's weight is its share of the
mix's tokens: a trainer that samples shards by these weights sees the manifest's bucket weights. Prefixes are
the shard paths without ``.parquet``, relative to the manifest's folder (or absolute with ``root``); converting
Parquet to Megatron's ``.bin``/``.idx`` (tokenising) is the trainer's step and keeps the same prefixes.
"""

from __future__ import annotations

from pathlib import Path

from refinery.pipelines.manifest import lexically_safe, load_manifest


def megatron_blend(manifest_path: str | Path, root: str | Path | None = None, digits: int = 8) -> str:
    """The ``--data-path`` argument for the manifest's training shards (held-out sets excluded)."""
    manifest = load_manifest(manifest_path)
    shards = [s for s in manifest["shards"] if s["tokens"] > 0]
    total = sum(s["tokens"] for s in shards)
    if total == 0:
        raise ValueError(f"{manifest_path}: the manifest's shards hold no tokens")
    parts = []
    for shard in shards:
        prefix = lexically_safe(shard["path"]).removesuffix(".parquet")
        if root is not None:
            prefix = str(Path(root) / prefix)
        parts.append(f"{shard['tokens'] / total:.{digits}f} {prefix}")
    return " ".join(parts)
