"""Phase 2 (per shard): each document's nearest centroid, written hash-partitioned by cluster.

For every document of a shard: ``cluster`` (the centroid of highest cosine similarity, ties to the lower
index), ``distance`` = 1 − that similarity, its ``quality_score`` when the corpus has one, where it lives
(``shard`` index, ``row`` in the shard file) and its embedding. Rows go to partition
``partition_of(cluster)`` under ``work/assign/part-NNNNN/SHARD.parquet`` with a per-shard index of row counts
and checksums (:func:`refinery.pipelines.partitions.write_partitioned`), so the next phase brings each
cluster's documents together without any process holding the corpus.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.dedup.embed import EMBEDDING, embedding_matrix
from refinery.dedup.semantic.kmeans import load_centroids, unit_rows
from refinery.pipelines import storage
from refinery.pipelines.documents import ID
from refinery.pipelines.partitions import partition_of, write_partitioned

QUALITY = "quality_score"
CLUSTER, DISTANCE, SHARD, ROW = "cluster", "distance", "shard", "row"
ROWS_PER_PRODUCT = 4096


def nearest_centroids(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, cosine distance) per row, in row blocks so memory stays ``ROWS_PER_PRODUCT × k``."""
    clusters = np.empty(len(vectors), dtype=np.int32)
    distances = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), ROWS_PER_PRODUCT):
        similarity = vectors[start : start + ROWS_PER_PRODUCT] @ centroids.T
        best = np.argmax(similarity, axis=1)
        clusters[start : start + len(best)] = best
        distances[start : start + len(best)] = 1.0 - similarity[np.arange(len(best)), best]
    return clusters, distances


def assign_shard(job: dict[str, Any]) -> dict[str, Any]:
    """Assign one shard's documents to clusters and write them into the cluster partitions."""
    centroids = load_centroids(job["centroids"], job["centroids_record"])
    fs, path = storage.filesystem(job["path"])
    with fs.open(path, "rb") as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
        handle.seek(0)
        columns = [ID, EMBEDDING] + ([QUALITY] if QUALITY in names else [])
        table = pq.read_table(handle, columns=columns)
    vectors = unit_rows(embedding_matrix(table.column(EMBEDDING)))
    clusters, distances = nearest_centroids(vectors, centroids)
    n = table.num_rows
    quality = table.column(QUALITY).cast(pa.float32()) if QUALITY in table.column_names else pa.nulls(n, pa.float32())
    rows = pa.table(
        {
            ID: table.column(ID),
            CLUSTER: pa.array(clusters, pa.int32()),
            DISTANCE: pa.array(distances, pa.float32()),
            QUALITY: quality,
            SHARD: pa.array(np.full(n, job["shard_index"], dtype=np.int32)),
            ROW: pa.array(np.arange(n, dtype=np.int64)),
            EMBEDDING: table.column(EMBEDDING),
        }
    )
    parts = partition_of(clusters.astype(np.uint64), job["partitions"])
    index = write_partitioned(job["out"], job["writer"], rows, parts, job["partitions"])
    return {"rows": index["rows"], "partitions": len(index["files"])}
