"""Ingest benchmark: WARC reading + HTML extraction, pages/s and MB/s per core, against datatrove.

One command: ``.venv/bin/python benchmarks/ingest_bench.py [--warcs GLOB] [--max-pages N]``.

Each contender runs in its own subprocess pinned to one core, over the same WARC files, and reports pages,
HTML megabytes, seconds and peak RSS:

* ``refinery/resiliparse`` — Refinery's WARC reader with the resiliparse extractor (the default);
* ``refinery/trafilatura`` — Refinery's WARC reader with trafilatura;
* ``datatrove/trafilatura`` — datatrove's ``WarcReader`` + ``Trafilatura`` extractor (the peer FineWeb used).

Ratios are printed against datatrove. ``--max-pages`` caps the trafilatura contenders (they are ~20× slower) so
the run stays short; resiliparse always reads everything, and per-page figures are normalised.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from harness import pin_one_core  # noqa: E402

CONTENDERS = ("refinery/resiliparse", "refinery/trafilatura", "datatrove/trafilatura")


def _html_bytes(paths: list[str], max_pages: int | None) -> tuple[int, int]:
    """Pages and payload bytes of the HTML responses the contenders will see (same cap)."""
    from warcio.archiveiterator import ArchiveIterator

    pages = size = 0
    for path in paths:
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                kind = record.rec_headers.get_header("WARC-Identified-Payload-Type") or ""
                if record.rec_type == "response" and "html" in kind:
                    if max_pages is not None and pages >= max_pages:
                        return pages, size
                    pages += 1
                    size += len(record.content_stream().read())
    return pages, size


def _run_refinery(paths: list[str], extractor: str, max_pages: int | None) -> dict:
    from refinery.pipelines.readers import READERS
    from refinery.pipelines.recipe import InputSpec
    from refinery.pipelines.shards import Shard

    spec = InputSpec(name="bench", format="warc", paths=paths, extractor=extractor, extraction_timeout_s=30)
    pages = chars = 0
    started = time.perf_counter()
    for path in paths:
        shard = Shard(source="bench", path=path, key=os.path.basename(path))
        for batch in READERS["warc"](shard, spec, 1000):
            reasons = batch.rejected.column("reason").to_pylist()
            pages += batch.num_in - reasons.count("ingest:non_html")
            chars += sum(len(t) for t in batch.kept.column("text").to_pylist())
        if max_pages is not None and pages >= max_pages:
            break
    return {"pages": pages, "chars": chars, "seconds": time.perf_counter() - started}


def _run_datatrove(paths: list[str], max_pages: int | None) -> dict:
    import logging

    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    logging.disable(logging.WARNING)
    folder = os.path.dirname(paths[0])
    names = {os.path.basename(p) for p in paths}
    reader = WarcReader(folder, glob_pattern="*.warc.gz", limit=max_pages or -1)
    reader_files = [f for f in reader.data_folder.list_files(glob_pattern="*.warc.gz") if os.path.basename(f) in names]
    extractor = Trafilatura(favour_precision=True, timeout=30.0)
    fed = [0]
    chars = 0
    started = time.perf_counter()

    def documents():
        for filepath in reader_files:
            for document in reader.read_file(filepath):
                if max_pages is not None and fed[0] >= max_pages:
                    return
                fed[0] += 1
                yield document

    for document in extractor.run(documents(), rank=0, world_size=1):
        chars += len(document.text)
    return {"pages": fed[0], "chars": chars, "seconds": time.perf_counter() - started}


def _live_children_peak_mb() -> float:
    """Peak RSS of helper processes still alive (datatrove extracts in a sandbox subprocess)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == os.getpid() and "VmHWM" in fields:
            total += int(fields["VmHWM"].split()[0]) / 1024
    return total


def worker(contender: str, paths: list[str], max_pages: int | None) -> None:
    pin_one_core()
    if contender == "datatrove/trafilatura":
        result = _run_datatrove(paths, max_pages)
    else:
        result = _run_refinery(paths, contender.split("/")[1], None if contender.endswith("resiliparse") else max_pages)
    children = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, _live_children_peak_mb())
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + children
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warcs", default=str(REPO / "sample_corpus/warc/*.warc.gz"))
    parser.add_argument("--max-pages", type=int, default=300, help="cap for the trafilatura contenders")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = sorted(glob.glob(args.warcs))
    if not paths:
        sys.exit(f"no WARC files match {args.warcs}")
    if args.worker:
        worker(args.worker, paths, args.max_pages)
        return
    results = {}
    for contender in CONTENDERS:
        capped = None if contender == "refinery/resiliparse" else args.max_pages
        command = [
            sys.executable,
            __file__,
            "--warcs",
            args.warcs,
            "--max-pages",
            str(args.max_pages or 0),
            "--worker",
            contender,
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        result = json.loads(output)
        _, html_size = _html_bytes(paths, None if capped is None else result["pages"])
        result["html_mb"] = html_size / 1e6
        results[contender] = result
    peer = results["datatrove/trafilatura"]
    peer_rate = peer["pages"] / peer["seconds"]
    peer_rss = peer["peak_rss_mb"]
    print(f"WARC files: {len(paths)} ({args.warcs}); trafilatura contenders capped at {args.max_pages} pages")
    print(
        f"{'contender':<24}{'pages':>7}{'pages/s':>10}{'MB HTML/s':>11}{'peak RSS MB':>13}{'x pages/s':>11}{'x RSS':>8}"
    )
    for contender, r in results.items():
        rate = r["pages"] / r["seconds"]
        rss = r["peak_rss_mb"]
        print(
            f"{contender:<24}{r['pages']:>7}{rate:>10.1f}{r['html_mb'] / r['seconds']:>11.2f}{rss:>13.0f}"
            f"{rate / peer_rate:>11.2f}{rss / peer_rss:>8.2f}"
        )
    print("x = ratio to datatrove/trafilatura (WarcReader + Trafilatura) on the same files, one core each;")
    print("peak RSS = the process plus datatrove's extraction sandbox subprocess where there is one")


if __name__ == "__main__":
    main()
