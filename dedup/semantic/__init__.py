"""SemDeDup (Abbas et al. 2023) as a global stage: k-means on embeddings, then near-duplicates inside clusters.

The stage class (:mod:`refinery.dedup.semantic.stage`) names the phases in order; each phase is a module here:
``sample`` → ``kmeans`` → ``assign`` → ``similarity`` → ``report``, and ``decision`` applies the result per shard.
"""

from refinery.dedup.semantic.stage import SemanticDedup

__all__ = ["SemanticDedup"]
