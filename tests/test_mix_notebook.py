"""notebooks/mix_ablation.ipynb runs top to bottom (nbclient, a real kernel) on a real mix directory."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from test_mix_optimizer import optimise, shared_base, shared_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "mix_ablation.ipynb"


def kernel_name(tmp_path: Path) -> str:
    """The installed ``python3`` kernelspec, or one written to a temporary JUPYTER_PATH that runs this Python."""
    from jupyter_client.kernelspec import find_kernel_specs

    if "python3" in find_kernel_specs():
        return "python3"  # jupyter_client runs a spec's bare "python" as sys.executable
    spec = tmp_path / "kernels" / "refinery-python"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "refinery", "language": "python"}))
    os.environ["JUPYTER_PATH"] = f"{tmp_path}{os.pathsep}{os.environ.get('JUPYTER_PATH', '')}"
    return "refinery-python"


@pytest.fixture(scope="module")
def mix_dir(ray_local, tmp_path_factory) -> Path:
    """The optimizer test's mix (reused when that module ran first; an optimisation is resumable)."""
    base = shared_base(tmp_path_factory)
    shared_run(base)
    optimise(base)
    return base / "out"


@pytest.fixture(scope="module")
def ablation_dir(mix_dir: Path) -> Path:
    """The ablation test's output on the same run (resumed: proxies it trained are not trained again)."""
    from test_ablation import CONFIG as ABLATION

    from refinery.mixes.ablation.run import ablate

    ablate(mix_dir.parent / "run", ABLATION, mix_dir.parent / "ablation", progress=False)
    return mix_dir.parent / "ablation"


def test_notebook_executes_and_shows_the_mix(mix_dir: Path, ablation_dir: Path, tmp_path: Path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MIX_DIR", str(mix_dir))
    monkeypatch.setenv("ABLATION_DIR", str(ablation_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name=kernel_name(tmp_path), resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, "proxy losses, fitted surface, predicted vs actual, chosen vs natural/uniform, ablation"
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 5, "buckets, best proxies, cross-validation, comparison, ablation tables"
    line = next(
        t for o in outputs if o.output_type == "stream" for t in o.text.splitlines() if t.startswith("MIX_NOTEBOOK")
    )
    shown = json.loads(line.split(" ", 1)[1])
    report = json.loads((mix_dir / "mix_report.json").read_text())
    assert shown["proxies"] == len(report["proxies"])
    assert shown["family"] == report["fit"]["family"] and shown["cv_spearman"] == report["fit"]["cv_spearman"]
    assert shown["chosen"] == {n: round(w, 6) for n, w in report["chosen"]["weights"].items()}
    assert shown["chosen_mean"] == report["comparison"]["summary"]["chosen"]["mean"]
    ablation = json.loads((ablation_dir / "ablation.json").read_text())
    assert shown["ablation"] == {r["variant"]: r["targets"]["mean"]["delta"] for r in ablation["table"]["rows"]}
