"""A real S3 endpoint: a run reads from and writes to ``s3://``, is killed and resumed there, and feeds shards,
verify and training — with its credentials never written anywhere.

The endpoint is moto's S3 server on 127.0.0.1, a separate process speaking the S3 HTTP protocol, reached through
``s3fs`` as a user's run would reach AWS or MinIO. Credentials: the inputs name theirs in ``storage_options``;
the run directory, the shards and the trainer get theirs from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``). The CLI runs are separate processes (each starts its embedded Ray
with that environment, as a user's would); the clean reference run shares the test session's Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_resume_kill import kill_tree

from refinery.dedup.phases import PAUSE_DIR_ENV, PAUSE_PHASE_ENV
from refinery.pipelines.cli import main as cli
from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe

REFINERY = [sys.executable, "-m", "refinery.pipelines.cli"]
BUCKET = "refinery-test"
KEY = f"AKIA{uuid.uuid4().hex[:16].upper()}"
SECRET = f"rfy-secret-{uuid.uuid4().hex}"
DETERMINISTIC = ("kept", "rejected", "errors", "stats")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(filesystem, endpoint, environment): moto's S3 server started for this module, one bucket in it."""
    import s3fs

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, log.read_text()
                time.sleep(0.2)
        fs = s3fs.S3FileSystem(
            key=KEY, secret=SECRET, client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
        )
        fs.mkdir(BUCKET)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        yield fs, endpoint, env
    finally:
        server.terminate()
        server.wait(timeout=30)


def documents() -> pa.Table:
    """40 real Debian changelogs plus planted duplicates (an exact copy, a near copy) so dedup has work."""
    sample = Path(__file__).resolve().parents[1] / "sample_corpus" / "parquet" / "debian_changelog-00000.parquet"
    table = pq.read_table(sample).slice(0, 40)
    texts = table.column("text").to_pylist()
    ids = [f"c{n:02d}" for n in range(len(texts))]
    words = texts[3].split(" ")
    near = " ".join(w if i % 50 else "edited" for i, w in enumerate(words))
    return pa.table({"id": [*ids, "copy", "near"], "text": [*texts, texts[2], near]})


def recipe(output: str, endpoint: str) -> dict:
    options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": endpoint}}
    return {
        "name": "object-store",
        "output_dir": output,
        "batch_size": 16,
        "inputs": [
            {
                "name": "web",
                "format": "parquet",
                "paths": [f"s3://{BUCKET}/in/*.parquet"],
                "id_field": "id",
                "storage_options": options,
            }
        ],
        "stages": [
            {"stage": "length", "min_chars": 200},
            {"stage": "exact_dedup", "num_partitions": 2},
            {"stage": "minhash_dedup", "num_partitions": 2},
        ],
    }


def digests(fs, root: str) -> dict[str, str]:
    """sha256 of every deterministic output file (kept, rejected, errors, stats) by path relative to ``root``."""
    found = {}
    for path in fs.find(root):
        relative = path[len(root.rstrip("/")) + 1 :]
        parts = relative.split("/")
        if parts[0] == "segments" and len(parts) > 2 and parts[2] in DETERMINISTIC:
            found[relative] = hashlib.sha256(fs.cat_file(path)).hexdigest()
    return found


def test_run_resume_shards_verify_train_on_s3(ray_local, s3, tmp_path, monkeypatch):
    fs, endpoint, env = s3
    table = documents()
    for part in range(2):
        with fs.open(f"{BUCKET}/in/part-{part}.parquet", "wb") as handle:
            pq.write_table(table.slice(part * 21, 21), handle)

    # the reference: inputs from s3:// (credentials in storage_options, carried to the workers), output local
    clean = tmp_path / "clean"
    assert run_recipe(parse_recipe(recipe(str(clean), endpoint), tmp_path), show_progress=False).ok
    import fsspec

    local = fsspec.filesystem("file")
    expected = digests(local, str(clean))
    assert any("/rejected/" in path for path in expected), "the planted duplicates were removed"

    # the same recipe with its run directory on s3://, killed in the middle of MinHash's pairs phase, resumed there
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe(f"s3://{BUCKET}/run", endpoint)))
    command = [*REFINERY, "run", str(path), "--num-cpus", "2", "--quiet"]
    flags = tmp_path / "flags"
    flags.mkdir()
    paused = {**env, PAUSE_DIR_ENV: str(flags), PAUSE_PHASE_ENV: "pairs"}
    driver = subprocess.Popen(
        command, env=paused, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 240
    while not any(flags.iterdir()):
        assert driver.poll() is None and time.time() < deadline, "the run ended before MinHash's pairs phase"
        time.sleep(0.2)
    time.sleep(1.0)
    kill_tree(psutil.Process(driver.pid))
    work = f"{BUCKET}/run/segments/02/work/_phases"
    assert fs.exists(f"{work}/signatures.json") and not fs.exists(f"{work}/pairs.json")
    assert not fs.exists(f"{BUCKET}/run/run.json")
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert digests(fs, f"{BUCKET}/run") == expected

    # shards written to s3://, verified there, and a few training steps read from that manifest
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"shard_rows": 10, "heldout_fraction": 0.1, "buckets": {"web": {"weight": 1}}}))
    mix = f"s3://{BUCKET}/mix"
    shards = subprocess.run(
        [*REFINERY, "shards", f"s3://{BUCKET}/run", "--weights", str(weights), "--output", mix, "--num-cpus", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shards.returncode == 0, shards.stderr[-3000:]
    manifest = json.loads(fs.cat_file(f"{BUCKET}/mix/manifest.json"))
    assert manifest["total_documents"] > 0
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, env[name])
    assert cli(["verify", f"{mix}/manifest.json"]) == 0
    trained = tmp_path / "train"
    code = cli(["train", f"{mix}/manifest.json", "--config", "tiny", "--output", str(trained), "--tokens", "2048"])
    assert code == 0
    assert (trained / "log.jsonl").read_text().strip()

    # the secret appears in no file any of this wrote (the bucket, the local runs, training) nor in any output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != path]
    assert len(written) > 10
    leaks = [str(p) for p in written if SECRET.encode() in p.read_bytes() or KEY.encode() in p.read_bytes()]
    stored = [p for p in fs.find(BUCKET) if not p.startswith(f"{BUCKET}/in/")]
    assert any(p.endswith("/run.json") for p in stored) and any(p.endswith("/manifest.json") for p in stored)
    leaks += [p for p in stored if SECRET.encode() in fs.cat_file(p) or KEY.encode() in fs.cat_file(p)]
    leaks += [name for name, out in (("run", resumed), ("shards", shards)) if SECRET in out.stdout + out.stderr]
    assert not leaks, f"credentials written to {leaks}"
