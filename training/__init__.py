"""Downstream training: tokenizer, packing with document masks, GQA decoder, trainer (reads a manifest)."""
