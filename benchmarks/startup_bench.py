"""Fixed cost of a run before its first shard: Refinery's embedded Ray against datatrove's local executor.

One command: ``.venv/bin/python benchmarks/startup_bench.py``.

Each contender is a fresh Python process that starts its executor and runs one trivial task to completion:

* ``refinery/ray``: ``ray_session(None, num_cpus)`` (the embedded head every ``refinery run`` starts) and one
  Ray task;
* ``refinery/ray+dashboard_agent``: the same with Ray's own (minimal) dashboard agent instead of the stand-in
  (``REFINERY_RAY_DASHBOARD_AGENT=1``), which shows what the stand-in saves;
* ``refinery/ray+api_server``: the same with Ray's own agent and its API server, as Ray starts a head
  (``REFINERY_RAY_API_SERVER=1`` too), which shows what leaving both out saves;
* ``datatrove/local``: ``LocalPipelineExecutor`` with one task and a one-step pipeline.

Measured from outside: wall seconds from process start to the task's result, CPU seconds of the whole process tree
(driver and every helper process it started), and the peak of the tree's summed RSS, sampled every 20 ms. Summed
RSS counts the pages that Ray's processes share (the Python interpreter, Ray's libraries) once per process, so the
peak of the summed PSS (each shared page split between the processes sharing it: what the tree takes from the
machine; sampled every 200 ms) is printed beside it. Runs alternate between the contenders (``--repeats`` each)
and medians are printed with the ratio to datatrove.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORKERS = {
    "refinery/ray": """
import ray
from refinery.pipelines.ray_session import ray_session

@ray.remote
def first_shard(x):
    return x + 1

with ray_session(None, {num_cpus}):
    assert ray.get(first_shard.remote(1)) == 2
""",
    "refinery/ray+dashboard_agent": "",  # refinery/ray's code, with the environment of ENVIRONMENTS
    "refinery/ray+api_server": "",
    "datatrove/local": """
from datatrove.executor import LocalPipelineExecutor

def first_shard(data, rank, world_size):
    yield from ()

LocalPipelineExecutor(pipeline=[first_shard], tasks=1, workers=1, logging_dir={logs!r}).run()
""",
}


#: what each contender's process gets in its environment (the embedded head's switches)
ENVIRONMENTS = {
    "refinery/ray": {"REFINERY_RAY_API_SERVER": "0", "REFINERY_RAY_DASHBOARD_AGENT": "0"},
    "refinery/ray+dashboard_agent": {"REFINERY_RAY_API_SERVER": "0", "REFINERY_RAY_DASHBOARD_AGENT": "1"},
    "refinery/ray+api_server": {"REFINERY_RAY_API_SERVER": "1", "REFINERY_RAY_DASHBOARD_AGENT": "1"},
    "datatrove/local": {},
}


def measure(contender: str, num_cpus: int) -> dict[str, float]:
    """Start the contender, sample its process tree until it exits; wall, tree CPU and peak tree RSS."""
    import psutil

    with tempfile.TemporaryDirectory() as logs:
        code = (WORKERS[contender] or WORKERS["refinery/ray"]).format(num_cpus=num_cpus, logs=logs)
        env = {**os.environ, **ENVIRONMENTS[contender]}
        started = time.perf_counter()
        process = psutil.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        peak, peak_pss, cpu = 0, 0, {}
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_pss
            rounds = 0
            while not done.is_set():
                total = total_pss = 0
                with_pss = rounds % 10 == 0  # PSS reads /proc/PID/smaps: every 200 ms, not to load the machine
                rounds += 1
                try:
                    tree = [process, *process.children(recursive=True)]
                except psutil.Error:
                    tree = []
                for member in tree:
                    try:
                        memory = member.memory_full_info() if with_pss else member.memory_info()
                        total += memory.rss
                        total_pss += memory.pss if with_pss else 0
                        times = member.cpu_times()
                        cpu[member.pid] = times.user + times.system
                    except psutil.Error:
                        pass
                peak = max(peak, total)
                peak_pss = max(peak_pss, total_pss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, stderr = process.communicate()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        if process.returncode != 0:
            raise RuntimeError(f"{contender} failed:\n{stderr.decode()[-2000:]}")
    return {"wall_s": wall, "tree_cpu_s": sum(cpu.values()), "peak_tree_gb": peak / 1e9, "peak_pss_gb": peak_pss / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in WORKERS}
    for _ in range(args.repeats):
        for name in WORKERS:
            runs[name].append(measure(name, args.num_cpus))
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    peer = medians["datatrove/local"]
    print(
        f"{'contender':<30}{'wall s':>8}{'tree CPU s':>12}{'peak RSS GB':>13}{'peak PSS GB':>13}"
        f"{'x wall':>8}{'x CPU':>7}{'x RSS':>7}"
    )
    for name, m in medians.items():
        print(
            f"{name:<30}{m['wall_s']:>8.2f}{m['tree_cpu_s']:>12.2f}{m['peak_tree_gb']:>13.3f}{m['peak_pss_gb']:>13.3f}"
            f"{m['wall_s'] / peer['wall_s']:>8.2f}{m['tree_cpu_s'] / peer['tree_cpu_s']:>7.2f}"
            f"{m['peak_tree_gb'] / peer['peak_tree_gb']:>7.2f}"
        )
    print(f"medians of {args.repeats} alternating runs; x = ratio to datatrove/local; raw: " + json.dumps(runs))


if __name__ == "__main__":
    main()
