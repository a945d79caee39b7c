"""NSFW and PII benchmark: URL blocklist memory and speed, PII masking speed, against datatrove, one core each.

One command: ``.venv/bin/python benchmarks/nsfw_pii_bench.py``.

* URL filter: Refinery's ``url_blocklist`` (memory-mapped 64-bit digests) against datatrove's ``URLFilter``
  (Python sets; its tldextract kept offline) on the same URLs: the sample corpus's real URLs plus 20,000
  entries of the blocklists themselves, so both paths (clean and listed) are exercised. Peak RSS is per worker
  once the lists are loaded; Refinery's one-time build of its digest cache is reported apart.
* PII: Refinery's ``pii`` stage (counting and masking e-mails, phones, IPs) against datatrove's ``PIIFormatter``
  (masking e-mails and IPs) on every document of the sample corpus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb, pin_one_core, print_ratios, run_contenders

CONTENDERS = ("refinery/url", "datatrove/url", "refinery/pii", "datatrove/pii")
CACHE = Path(tempfile.gettempdir()) / "refinery-bench-url-cache"


def bench_urls() -> list[str]:
    from refinery.filters.url_blocklist import ARCHIVE, datatrove_assets

    urls = [u for u in load_documents().column("url").to_pylist() if u]
    with tarfile.open(datatrove_assets() / ARCHIVE, "r:gz") as tar:
        domains = tar.extractfile("domains").read(600_000).decode().splitlines()[1:10_001]
        listed = tar.extractfile("urls").read(2_000_000).decode().splitlines()[1:10_001]
    return urls + [f"https://{d}/index.html" for d in domains] + [f"http://{u}" for u in listed]


def _refinery_url(urls: list[str]) -> tuple[int, float]:
    import pyarrow as pa

    from refinery.filters.url_blocklist import UrlBlocklistFilter

    stage = UrlBlocklistFilter(cache_dir=str(CACHE))
    stage.setup()
    started = time.perf_counter()
    table = pa.table({"id": [str(i) for i in range(len(urls))], "text": [""] * len(urls), "url": urls})
    kept = sum(stage.process(table.slice(s, 1000)).kept.num_rows for s in range(0, len(urls), 1000))
    return kept, time.perf_counter() - started


def _datatrove_url(urls: list[str]) -> tuple[int, float]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    url_filter = URLFilter()
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())
    url_filter.download_data()
    started = time.perf_counter()
    kept = sum(url_filter.filter(Document(text="", id=str(i), metadata={"url": u})) is True for i, u in enumerate(urls))
    return kept, time.perf_counter() - started


def _refinery_pii(_: list[str]) -> tuple[int, float]:
    from refinery.filters.pii import PiiFilter

    table = load_documents()
    stage = PiiFilter(max_emails=10**9, max_phones=10**9, max_ips=10**9)
    started = time.perf_counter()
    kept = sum(stage.process(table.slice(s, 1000)).kept.num_rows for s in range(0, table.num_rows, 1000))
    return kept, time.perf_counter() - started


def _datatrove_pii(_: list[str]) -> tuple[int, float]:
    from datatrove.data import Document
    from datatrove.pipeline.formatters import PIIFormatter

    texts = load_documents().column("text").to_pylist()
    formatter = PIIFormatter()
    started = time.perf_counter()
    for index, text in enumerate(texts):
        formatter.format(Document(text=text, id=str(index)).text)
    return len(texts), time.perf_counter() - started


RUNNERS = {
    "refinery/url": _refinery_url,
    "datatrove/url": _datatrove_url,
    "refinery/pii": _refinery_pii,
    "datatrove/pii": _datatrove_pii,
}


def worker(contender: str) -> None:
    pin_one_core()
    items = bench_urls() if contender.endswith("url") else []
    count = len(items) if items else load_documents().num_rows
    kept, seconds = RUNNERS[contender](items)
    print(json.dumps({"items": count, "kept": kept, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def build_cache() -> dict:
    """Refinery's one-time digest build (cold start of the first worker on a node)."""
    code = (
        "import resource,time,sys; from refinery.filters.url_blocklist import UrlBlocklistFilter as U; "
        "t=time.perf_counter(); U(cache_dir=sys.argv[1]).setup(); "
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)"
    )
    for old in CACHE.glob("*.npy"):
        old.unlink()
    seconds, rss = subprocess.run(
        [sys.executable, "-c", code, str(CACHE)], check=True, capture_output=True, text=True
    ).stdout.split()
    return {"seconds": float(seconds), "peak_rss_mb": float(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    load_documents()
    cold = build_cache()
    print_ratios(run_contenders(__file__, CONTENDERS), "items")
    print(
        f"refinery/url one-time digest build: {cold['seconds']:.1f}s, peak RSS {cold['peak_rss_mb']:.0f} MB "
        "(then cached on disk and memory-mapped by every worker)"
    )
    print("items: URLs for */url, documents for */pii; x = ratio to datatrove on the same input, one core each")


if __name__ == "__main__":
    main()
