"""``eval.html``: a classifier evaluation (``eval.json``) as a page in the run report's style.

The student's accuracy, macro-F1 and Spearman beside the baselines (majority class, length-only logistic
regression) and the ceiling (the teacher against itself under a paraphrased prompt), a verdict on whether the
student beats the length baseline, and the confusion matrix both as a shaded table (exact counts) and as the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAGE = "eval.html"
METRICS = ("accuracy", "macro_f1", "spearman")


def _metric(values: dict[str, Any] | None, name: str) -> str:
    if not values or values.get(name) is None:
        return "-"
    return f"{values[name]:.3f}"


def _verdict(result: dict[str, Any]) -> tuple[str, str]:
    student = result["student"]["macro_f1"]
    length = (result["baselines"].get("length_logreg") or {}).get("macro_f1")
    majority = result["baselines"]["majority"]["macro_f1"]
    if length is not None and student <= length:
        return (
            "warning",
            f"The student (macro-F1 {student:.3f}) does not beat the length-only baseline ({length:.3f}): "
            "it has learnt length, not the label.",
        )
    if student <= majority:
        return "warning", f"The student (macro-F1 {student:.3f}) does not beat the majority class ({majority:.3f})."
    ceiling = result.get("teacher_self_agreement")
    reach = (
        f"; {result['student_f1_over_ceiling']:.0%} of the teacher's self-agreement"
        if result.get("student_f1_over_ceiling")
        else ""
    )
    beaten = f"the length baseline ({length:.3f})" if length is not None else f"the majority class ({majority:.3f})"
    unmeasured = "" if ceiling else " (no ceiling measured)"
    return "ok", f"The student (macro-F1 {student:.3f}) beats {beaten}{reach}{unmeasured}."


def confusion_table(matrix: list[list[int]], classes: list[str]) -> str:
    """Rows: the teacher's label; columns: the student's; cells shaded by their share of the row."""
    from refinery.pipelines.report_page import esc

    head = "".join(f'<th class="num">{esc(c)}</th>' for c in classes)
    rows = []
    for label, row in zip(classes, matrix, strict=True):
        total = sum(row) or 1
        cells = "".join(
            f'<td class="num" style="background:rgba(59,111,212,{0.08 + 0.6 * v / total:.2f})">{v:,}</td>' for v in row
        )
        rows.append(f"<tr><th>{esc(label)}</th>{cells}</tr>")
    return (
        '<div class="scroll"><table><thead><tr><th>teacher ↓ / student →</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def evaluation_body(result: dict[str, Any], image: str | None) -> str:
    from refinery.pipelines.report_page import esc, meta_table, table

    css, verdict = _verdict(result)
    rows = [["student", result["student"]["documents"], *(_metric(result["student"], m) for m in METRICS)]]
    for name, values in result["baselines"].items():
        rows.append(
            [f"baseline: {name.replace('_', ' ')}", values["documents"], *(_metric(values, m) for m in METRICS)]
        )
    ceiling = result.get("teacher_self_agreement")
    if ceiling:
        rows.append(
            [
                f"ceiling: teacher vs {ceiling.get('prompt', 'paraphrase')}",
                ceiling["documents"],
                *(_metric(ceiling, m) for m in METRICS),
            ]
        )
    scores = table(["model", "held-out documents", "accuracy", "macro-F1", "Spearman"], rows, numeric=(1, 2, 3, 4))
    meta = meta_table(
        [
            ("student", f"{result['kind']} ({result['model']})"),
            ("prompt / task", f"{result['prompt']} / {result['task']}"),
            ("training documents", f"{result['train_documents']:,}"),
            ("teacher failures", f"{result.get('teacher_failed', 0):,}"),
        ],
    )
    picture = f'<img src="{esc(image)}" alt="confusion matrix" style="max-width:520px">' if image else ""
    return (
        f'<p class="{css}" data-summary="verdict">{esc(verdict)}</p>{meta}<h2>Scores on the held-out split</h2>{scores}'
        f"<h2>Confusion matrix</h2>{confusion_table(result['student']['confusion'], result['classes'])}{picture}"
    )


def write_evaluation_page(result: dict[str, Any], output: Path, run_dir: str | None = None) -> Path:
    """``eval.html`` into ``output`` (beside eval.json and confusion.png); linked from ``run_dir``'s report if given."""
    from refinery.pipelines.report_page import esc, page

    output = Path(output)
    title = f"Refinery classifier evaluation: {result['kind']} · {result['prompt']}"
    image = "confusion.png" if (output / "confusion.png").exists() else None
    path = output / PAGE
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text(page(title, f"<h1>{esc(title)}</h1>{evaluation_body(result, image)}"))
    temporary.replace(path)
    if run_dir:
        from refinery.pipelines.report import register_page, write_report

        register_page(run_dir, "classifier", title, str(path.resolve()))
        write_report(run_dir)
    return path
