"""How many tokens each bucket gets, how many whole epochs that is, and the exact key cutoffs that select them.

Up-sampling repeats a bucket's documents ``floor(target / available)`` whole times (epochs 0, 1, ...) and
takes the rest from one more, partial epoch; down-sampling is that partial epoch alone. A partial epoch takes
documents in ``sample_key`` order (a seeded hash of the id: without replacement, uniformly at random) up to
the cutoff whose cumulative tokens come closest to the remainder, so a bucket's tokens are within one document
of its target. Cutoffs come from key histograms (:func:`refinery.mixes.shard_index.key_histograms`) and the rows
of the one bin the cutoff falls in, so no process ever sorts a whole bucket.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .shard_index import BIN_SHIFT, BINS, KEY_SPACE
from .weights import WeightsSpec


class MixPlanError(ValueError):
    """A weights file that cannot be honoured by this run (a bucket beyond its epochs, an empty bucket...)."""


@dataclass
class BucketPlan:
    """Everything decided for one bucket; most of it lands in the manifest."""

    name: str
    max_epochs: float
    heldout_fraction: float
    heldout_max_documents: int | None
    documents: int = 0  # in the run
    tokens: int = 0
    heldout_cutoff: int = 0
    heldout_documents: int = 0
    heldout_tokens: int = 0
    weight: float = 0.0  # share of the output's training tokens
    target_tokens: int = 0
    whole_epochs: int = 0
    remainder_tokens: int = 0
    sample_cutoff: int = 0
    remainder_documents: int = 0
    remainder_selected_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def available_documents(self) -> int:
        return self.documents - self.heldout_documents

    @property
    def available_tokens(self) -> int:
        return self.tokens - self.heldout_tokens

    @property
    def output_documents(self) -> int:
        return self.whole_epochs * self.available_documents + self.remainder_documents

    @property
    def output_tokens(self) -> int:
        return self.whole_epochs * self.available_tokens + self.remainder_selected_tokens

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            available_documents=self.available_documents,
            available_tokens=self.available_tokens,
            output_documents=self.output_documents,
            output_tokens=self.output_tokens,
        )
        return data


def assign_targets(spec: WeightsSpec, plans: dict[str, BucketPlan]) -> int:
    """Fill every plan's ``target_tokens``, ``weight``, ``whole_epochs`` and ``remainder_tokens``; return the total.

    ``tokens`` buckets get their count; ``weight`` buckets share what is left of ``total_tokens`` in proportion
    to their weights, or, without a total, the largest amount that keeps every weighted bucket within its
    ``max_epochs``. A bucket that would need more epochs than allowed raises :class:`MixPlanError` naming it.
    """
    fixed = {n: spec.bucket(n).tokens for n in plans if spec.bucket(n).tokens is not None}
    weighted = {n: spec.bucket(n).weight for n in plans if spec.bucket(n).weight is not None}
    weight_sum = sum(weighted.values())
    if spec.total_tokens is not None:
        remaining = spec.total_tokens - sum(fixed.values())
        if remaining < 0:
            raise MixPlanError(f"the buckets' token targets add up to {sum(fixed.values())} > total_tokens")
        if weight_sum == 0 and remaining > 0 and not fixed:
            raise MixPlanError("every bucket has weight 0: nothing to mix")
    elif weight_sum > 0:
        caps = []
        for name, weight in weighted.items():
            if weight > 0:
                plan = plans[name]
                if plan.available_tokens <= 0:
                    raise MixPlanError(f"bucket {name!r} has weight {weight} but no tokens outside its held-out set")
                caps.append(math.floor(plan.available_tokens * plan.max_epochs * weight_sum / weight))
        remaining = min(caps)
    else:
        remaining = 0
    targets = dict(fixed)
    for name, weight in weighted.items():
        targets[name] = round(remaining * weight / weight_sum) if weight_sum else 0
    total = sum(targets.values())
    if total <= 0:
        raise MixPlanError("the mix has no tokens: every target is 0")
    for name, plan in plans.items():
        target = targets[name]
        plan.target_tokens = target
        plan.weight = target / total
        if target == 0:
            continue
        if plan.available_tokens <= 0:
            raise MixPlanError(f"bucket {name!r} needs {target} tokens but has none outside its held-out set")
        epochs = target / plan.available_tokens
        if epochs > plan.max_epochs * (1 + 1e-9):
            raise MixPlanError(
                f"bucket {name!r} needs {epochs:.3f} epochs ({target} tokens of {plan.available_tokens} available) "
                f"but max_epochs is {plan.max_epochs}; lower its weight or raise its max_epochs"
            )
        plan.whole_epochs = target // plan.available_tokens
        plan.remainder_tokens = target - plan.whole_epochs * plan.available_tokens
    return total


def merge_histograms(parts: list[dict[str, list[list[int]]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sum sparse per-shard histograms into dense (counts, tokens) arrays per bucket."""
    merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in parts:
        for bucket, (bins, counts, tokens) in part.items():
            if bucket not in merged:
                merged[bucket] = (np.zeros(BINS, dtype=np.int64), np.zeros(BINS, dtype=np.int64))
            np.add.at(merged[bucket][0], bins, counts)
            np.add.at(merged[bucket][1], bins, tokens)
    return merged


@dataclass(frozen=True)
class Boundary:
    """The bin a cutoff falls in and what the bins below it hold."""

    bin: int
    count_before: int
    tokens_before: int


def find_boundary(counts: np.ndarray, tokens: np.ndarray, target: int, by: str) -> Boundary | None:
    """The first bin where the cumulative ``by`` (count or tokens) reaches ``target``; None: take everything."""
    measure = counts if by == "count" else tokens
    cumulative = np.cumsum(measure)
    if target >= int(cumulative[-1]):
        return None
    position = int(np.searchsorted(cumulative, target, side="left"))
    if cumulative[position] == target and by == "count":
        position += 1  # the whole bin fits exactly: the cutoff is the next bin's first key
        if position >= BINS:
            return None
    before = slice(0, position)
    return Boundary(position, int(counts[before].sum()), int(tokens[before].sum()))


def cutoff_in_bin(boundary: Boundary, keys: list[int], tokens: list[int], target: int, by: str) -> tuple[int, int, int]:
    """(cutoff key, documents, tokens) selected: keys below the cutoff, closest to ``target``."""
    order = np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")
    sorted_keys = np.asarray(keys, dtype=np.uint64)[order]
    sorted_tokens = np.asarray(tokens, dtype=np.int64)[order]
    if by == "count":
        take = max(0, min(len(sorted_keys), target - boundary.count_before))
    else:
        cumulative = boundary.tokens_before + np.concatenate([[0], np.cumsum(sorted_tokens)])
        take = int(np.argmin(np.abs(cumulative - target)))
    upper = (boundary.bin + 1) << int(BIN_SHIFT)
    cutoff = int(sorted_keys[take]) if take < len(sorted_keys) else min(upper, KEY_SPACE)
    return cutoff, boundary.count_before + take, boundary.tokens_before + int(sorted_tokens[:take].sum())


def share_tolerance(plan: BucketPlan, realised_total: int) -> float:
    """How far a bucket's realised share may be from its declared one: max(0.01, one document's share).

    One document is the bucket's mean document (outside its held-out set): a sampler that stops within one
    document of the target cannot do better than that.
    """
    if plan.available_documents <= 0 or realised_total <= 0:
        return 0.01
    return max(0.01, plan.available_tokens / plan.available_documents / realised_total)


def share_is_off(realised: float, declared: float, tolerance: float, target_tokens: int, documents: int) -> bool:
    """The rule: off by more than the tolerance, or a bucket with a target that got no document at all."""
    return abs(realised - declared) > tolerance or (target_tokens > 0 and documents == 0)


def capping_bucket(spec: WeightsSpec, plans: dict[str, BucketPlan]) -> tuple[str, int] | None:
    """The weighted bucket whose ``max_epochs`` allows the smallest total, and that total (None: no weights)."""
    weighted = {n: spec.bucket(n).weight for n in plans if spec.bucket(n).weight}
    weight_sum = sum(weighted.values())
    fixed = sum(spec.bucket(n).tokens or 0 for n in plans)
    caps = {
        name: fixed + math.floor(plans[name].available_tokens * plans[name].max_epochs * weight_sum / weight)
        for name, weight in weighted.items()
    }
    if not caps:
        return None
    name = min(caps, key=lambda n: (caps[n], n))
    return name, caps[name]


def unmet_shares(spec: WeightsSpec, plans: dict[str, BucketPlan]) -> str | None:
    """Why the planned mix does not honour its weights, or None when it does.

    A bucket is off when its realised share of the output's training tokens is further than
    :func:`share_tolerance` from its declared share (its target's share), or when it has a positive target and
    gets no document at all. The message names each such bucket with its tokens, and the bucket whose epoch cap
    sets the largest total the weights allow (its tokens, its ``max_epochs``, that total).
    """
    realised_total = sum(p.output_tokens for p in plans.values())
    problems = []
    for name, plan in sorted(plans.items()):
        if plan.target_tokens == 0 and plan.output_tokens == 0:
            continue
        realised = plan.output_tokens / realised_total if realised_total else 0.0
        tolerance = share_tolerance(plan, realised_total)
        if share_is_off(realised, plan.weight, tolerance, plan.target_tokens, plan.output_documents):
            mean = plan.available_tokens / plan.available_documents if plan.available_documents else 0
            problems.append(
                f"bucket {name!r}: declared share {plan.weight:.4f}, realised {realised:.4f} "
                f"({plan.output_tokens:,} of {realised_total:,} tokens in {plan.output_documents:,} documents; "
                f"target {plan.target_tokens:,} tokens, {plan.available_tokens:,} available in "
                f"{plan.available_documents:,} documents of {mean:,.0f} tokens on average; tolerance {tolerance:.4f})"
            )
    if not problems:
        return None
    message = "the weights cannot be honoured: " + "; ".join(problems)
    cap = capping_bucket(spec, plans)
    if cap is not None:
        name, total = cap
        plan = plans[name]
        message += (
            f". The largest total is {total:,} tokens, set by bucket {name!r} ({plan.available_tokens:,} tokens "
            f"available, max_epochs {plan.max_epochs:g}): raise its max_epochs, lower its weight, or set a "
            "total_tokens the other buckets can be sampled at"
        )
    return message


def shares_honoured(buckets: dict[str, dict]) -> bool:
    """The same rule as :func:`unmet_shares`, from a manifest's bucket entries (declared and realised shares)."""
    total = sum(entry["tokens"] for entry in buckets.values())
    for entry in buckets.values():
        if entry["target_tokens"] == 0 and entry["tokens"] == 0:
            continue
        available = entry["available_documents"]
        one_document = entry["available_tokens"] / available / total if available and total else 0.0
        tolerance = max(0.01, one_document)
        realised, declared = entry["realised_share"], entry["declared_share"]
        if share_is_off(realised, declared, tolerance, entry["target_tokens"], entry["documents"]):
            return False
    return True
