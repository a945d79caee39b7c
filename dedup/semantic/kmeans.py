"""Phase 1b: spherical k-means (faiss) on the sample; the centroids are the clustering every later phase uses.

Spherical, because embeddings are unit vectors compared by cosine (as SemDeDup does). Deterministic: faiss is
seeded with the recipe seed, runs on one thread, and sees the sample in a fixed order (shard name, row). The
number of clusters is capped so every centroid has at least ``MIN_POINTS_PER_CENTROID`` sample points: a tiny
corpus gets fewer clusters instead of empty ones. Centroids are saved as a checked Parquet file
(``work/kmeans/centroids.parquet``, one row per centroid, float32) with its record in ``centroids.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from refinery.dedup.embed import EMBEDDING, embedding_matrix
from refinery.pipelines import storage
from refinery.pipelines.partitions import read_checked, write_checked

MIN_POINTS_PER_CENTROID = 10
CENTROID = "centroid"


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (float16 storage leaves norms ~1e-3 off; zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def effective_clusters(n_clusters: int, sample_rows: int) -> int:
    return max(1, min(n_clusters, sample_rows // MIN_POINTS_PER_CENTROID))


def fit_centroids(job: dict[str, Any]) -> dict[str, Any]:
    """Read every shard's sample (validated), fit k-means, write the centroids; returns their record."""
    import faiss

    parts = [read_checked(path, record) for path, record in job["samples"]]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        raise ValueError("semantic_dedup: the input has no documents to cluster")
    sample = unit_rows(np.concatenate([embedding_matrix(p.column(EMBEDDING)) for p in parts]))
    k = effective_clusters(job["n_clusters"], len(sample))
    faiss.omp_set_num_threads(1)
    kmeans = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=job["iterations"],
        seed=job["seed"],
        spherical=True,
        verbose=False,
        max_points_per_centroid=max(256, -(-len(sample) // k)),
    )
    kmeans.train(sample)
    centroids = unit_rows(kmeans.centroids)
    table = pa.table({CENTROID: pa.FixedSizeListArray.from_arrays(pa.array(centroids.reshape(-1)), centroids.shape[1])})
    record = write_checked(job["out"], table)
    return {"record": record, "clusters": k, "sample_rows": len(sample)}


def load_centroids(path: str, record: dict[str, Any]) -> np.ndarray:
    column = read_checked(path, record).column(CENTROID).combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size).astype(np.float32)


def write_json(path: str, data: Any) -> None:
    fs, inner = storage.filesystem(path)
    storage.write_json_atomic(fs, inner, data)


def read_json(path: str) -> Any:
    fs, inner = storage.filesystem(path)
    return storage.read_json(fs, inner)
