"""MinHash-LSH near-duplicate removal, one module per phase; :mod:`.stage` names the phases in order."""

from refinery.dedup.minhash.stage import MinhashDedup

__all__ = ["MinhashDedup"]
