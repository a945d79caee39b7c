"""The data-mix optimizer (``refinery mix``): RegMix-style proxy runs on Ray, a fitted mixing law, the chosen mix.

Steps, one module each: :mod:`.buckets` (token counts, held-out slices, epoch caps), :mod:`.candidates` (Dirichlet
mixes around the natural one), :mod:`.proxies` (shards + a small model per mix, Ray tasks, resumable),
:mod:`.targets` (what the proxies are scored on), :mod:`.fit` (linear, LightGBM, exponential mixing law; chosen by
cross-validated Spearman), :mod:`.search` (the best predicted mix inside the epoch caps), :mod:`.validate`
(held-out mixes, seeds), :mod:`.report` (plots); :mod:`.optimize` runs them in order. See docs/mix.md.
"""
