"""Filter ablations: what each stage's decisions do to a small model trained at a fixed token budget.

``refinery ablate RUN_DIR --config ABLATE.yaml --output DIR`` trains proxies on the run's output, on the run's output
with one stage's (or a group's) rejected documents put back, and on the unfiltered input after ingest, every one
at the same token budget and seeds, scored on the same held-out targets. See :mod:`refinery.mixes.ablation.run`.
"""
