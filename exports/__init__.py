"""Trainer formats: a verified mix manifest → Megatron indexed datasets or datatrove/nanotron token files.

``refinery export MANIFEST --format megatron|datatrove --output DIR`` tokenizes the manifest's shards with the
manifest's tokenizer, one dataset per bucket (so a trainer's blend carries the mix's weights), and writes its own
manifest (``export.json``) that ``refinery verify`` checks. Modules:

* :mod:`~refinery.exports.formats` — the byte layouts (Megatron ``.bin``/``.idx``, datatrove ``.ds``/``.ds.index``)
  and each trainer's document framing (which special tokens surround a document);
* :mod:`~refinery.exports.tokenize` — documents → one flat token array with the framing, vectorised;
* :mod:`~refinery.exports.shard_task` — the Ray task per source shard (verify, tokenize, split by bucket, write);
* :mod:`~refinery.exports.merge` — Megatron: the task per bucket that concatenates the shards' parts;
* :mod:`~refinery.exports.lineage` — ``export.json``: what was written, from what, and its verification;
* :mod:`~refinery.exports.exporter` — the driver (:func:`~refinery.exports.exporter.export_manifest`).
"""
