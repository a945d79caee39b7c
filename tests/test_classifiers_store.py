"""The label store never loses a label (issue 18 item 3): exclusive part names, concurrent labellers.

On main the next part number was the count of existing parts: after a deleted part the next append replaced a
later one, and two labellers on one folder overwrote each other's parts.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.classifiers.labelling import store
from refinery.classifiers.labelling.prompts import load_prompt
from refinery.classifiers.labelling.teacher import Answer

PROMPT = load_prompt("quality")


def answers(n: int) -> list[Answer]:
    return [Answer(label="yes", score=0.9, raw_answer="yes", error=None, probabilities=[0.1, 0.9]) for _ in range(n)]


def every_row(labels_dir: Path) -> set[str]:
    """Every id in every part on disk (not deduplicated): what was landed."""
    parts = sorted((labels_dir / store.LABELS).glob("*.parquet"))
    return {i for part in parts for i in pq.read_table(part, columns=["id"])["id"].to_pylist()}


def test_an_append_after_a_deleted_part_loses_no_label(tmp_path):
    paths = [store.append_answers(tmp_path, PROMPT, "t", [f"doc-{k}"], answers(1)) for k in range(3)]
    assert [p.name for p in paths] == ["quality-00000.parquet", "quality-00001.parquet", "quality-00002.parquet"]
    paths[1].unlink()
    new = store.append_answers(tmp_path, PROMPT, "t", ["doc-3"], answers(1))
    assert new.name == "quality-00003.parquet", "one above the highest, not the count"
    assert every_row(tmp_path) == {"doc-0", "doc-2", "doc-3"}, "doc-2's part was not replaced"


def test_a_later_answer_wins_in_part_order(tmp_path):
    store.append_answers(tmp_path, PROMPT, "t", ["a"], [Answer(None, None, None, "timeout", None)])
    for _ in range(10):  # numbers past 9 and past the first part: numeric order, not text order
        store.append_answers(tmp_path, PROMPT, "t", ["b"], answers(1))
    store.append_answers(tmp_path, PROMPT, "t", ["a"], answers(1))
    labels = store.read_labels(tmp_path)
    assert dict(zip(labels["id"].to_pylist(), labels["error"].to_pylist(), strict=True)) == {"a": None, "b": None}


def _writer(labels_dir: str, name: str, parts: int, barrier) -> None:
    barrier.wait()
    for k in range(parts):
        store.append_answers(labels_dir, PROMPT, name, [f"{name}-{k}"], answers(1))
        store.record_labelling(labels_dir, {"writer": name, "part": k})


def test_concurrent_store_writers_in_threads_and_processes_land_every_label(tmp_path):
    parts = 25
    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), f"t{w}", parts, barrier)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    context = multiprocessing.get_context("spawn")
    process_barrier = context.Barrier(3)
    processes = [
        context.Process(target=_writer, args=(str(tmp_path), f"p{w}", parts, process_barrier)) for w in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    writers = [f"t{w}" for w in range(4)] + [f"p{w}" for w in range(3)]
    expected = {f"{w}-{k}" for w in writers for k in range(parts)}
    assert every_row(tmp_path) == expected
    assert len(list((tmp_path / store.LABELS).glob("*.parquet"))) == len(expected), "one part per append"
    assert not list((tmp_path / store.LABELS).glob(".*")), "no temporary file left behind"
    entries = json.loads((tmp_path / "labelling.json").read_text())
    assert len(entries) == len(expected), "labelling.json lost no entry"


def test_two_refinery_label_processes_on_one_folder_land_every_label(real_documents, tmp_path):
    documents = real_documents.slice(0, 24).select(["id", "text", "source", "lang"])
    documents = documents.append_column("origin", pa.array(["kept"] * 24))
    (tmp_path / "labels").mkdir()
    store.write_atomic(documents, tmp_path / "labels" / store.DOCUMENTS)  # sampled already: no Ray needed
    with socket.socket() as probe:  # nothing listens: every answer is a recorded failure, quickly
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "refinery.pipelines.cli", "label", str(tmp_path / "run"), "--prompt", "quality"),
        *("--output", str(tmp_path / "labels"), "--teacher", "http", "--model", "none", "--max-retries", "0"),
        *("--base-url", f"http://127.0.0.1:{port}/v1", "--chunk-size", "1", "--timeout", "2"),
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    labelled = [json.loads(out.decode().strip().splitlines()[-1])["labelled"] for out, _ in outputs]
    rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "labels" / store.LABELS).glob("*.parquet"))
    assert rows == sum(labelled) and sum(labelled) >= 24, "every answer either process wrote is on disk"
    assert len(json.loads((tmp_path / "labels" / "labelling.json").read_text())) == 2


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_label_cache_key_covers_the_teachers_input_and_identity(real_documents, tmp_path):
    from refinery.classifiers.labelling.http import HttpTeacher
    from refinery.classifiers.labelling.local import LocalTeacher
    from refinery.classifiers.labelling.run import cache_key, label_documents

    documents = real_documents.slice(0, 2)
    port, other_port = dead_port(), dead_port()

    teachers: dict[int, HttpTeacher] = {}

    def teacher(port: int) -> HttpTeacher:  # nothing listens: each answer is a recorded (cached) failure
        return teachers.setdefault(port, HttpTeacher(f"http://127.0.0.1:{port}/v1", "m", max_retries=0, timeout_s=2))

    def labelled(**changes) -> int:
        settings = {"teacher": teacher(port), "max_tokens": 48, "store_chars": 6000, "prompt": PROMPT, **changes}
        return label_documents(
            documents,
            tmp_path,
            settings["prompt"],
            settings["teacher"],
            settings["max_tokens"],
            store_chars=settings["store_chars"],
        )["labelled"]

    assert labelled() == 2 and labelled() == 0, "the same command is answered from the cache"
    assert labelled(max_tokens=32) == 2, "--max-tokens changes what the teacher sees"
    assert labelled(store_chars=500) == 2, "--store-chars changes what the teacher sees"
    assert labelled(teacher=teacher(other_port)) == 2, "another base URL is another teacher"
    assert labelled(prompt=load_prompt("quality_paraphrase")) == 2, "another prompt"
    assert labelled() == 0 and labelled(max_tokens=32) == 0, "each variant's answers stay cached"

    model = tmp_path / "teacher.gguf"  # a local teacher's identity is its file's digest, not its path
    model.write_bytes(b"weights-1")
    before = cache_key(PROMPT, LocalTeacher(str(model)), 48, 6000)
    assert cache_key(PROMPT, LocalTeacher(str(model)), 48, 6000) == before
    model.write_bytes(b"weights-2")
    assert cache_key(PROMPT, LocalTeacher(str(model)), 48, 6000) != before, "a replaced model is another teacher"
