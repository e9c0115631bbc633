"""The bag evaluation report: an HTML page with its PNG figures beside it, and the JSON summary.

Written into an output folder that the caller creates atomically (`bags.evaluation.evaluate_bag`):

    report.html, summary.json, figures/<name>.png for each name in FIGURES, figures/sample_<frame>.png per sample
"""
from __future__ import annotations

import html
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dgdehaze_core.bags.records import BagEvaluation  # noqa: E402
from dgdehaze_core.io.images import write_image  # noqa: E402
from dgdehaze_core.io.tables import format_table, write_json  # noqa: E402
from dgdehaze_core.visualize import colorize_depth, draw_detections  # noqa: E402

LOG = logging.getLogger(__name__)

FIGURES = {
    "haze_density": "Haze density over time (dark-channel density of the input and of the dehazed output)",
    "latency": "Per-frame latency and frame rate",
    "detection_counts": "Detections per frame on hazy and dehazed frames",
    "detection_classes": "Detections and mean confidence per class, hazy vs dehazed",
}
"""The report's plots: file stem -> caption. Before/after panels come on top of these, one per sample frame."""
HAZY_COLOR, DEHAZED_COLOR = "#7f7f7f", "#1f77b4"


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_haze_density(evaluation: BagEvaluation, path: Path) -> None:
    t = evaluation.seconds_in_bag()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(t, [r.haze_density_hazy for r in evaluation.records], color=HAZY_COLOR, label="hazy input")
    ax.plot(t, [r.haze_density_dehazed for r in evaluation.records], color=DEHAZED_COLOR, label="dehazed output")
    ax.set(xlabel="time in bag (s)", ylabel="haze density", ylim=(0, 1))
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_latency(evaluation: BagEvaluation, path: Path) -> None:
    t = evaluation.seconds_in_bag()
    latency = np.array([r.latency_ms for r in evaluation.records], np.float64)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(t, latency, color=DEHAZED_COLOR, label="latency: dehaze + detect")
    finite = latency[np.isfinite(latency) & (latency > 0)]
    if finite.size:
        median = float(np.median(finite))
        rate = "" if evaluation.rate is not None else f" ({1000.0 / median:.1f} FPS)"
        ax.axhline(median, color="k", linestyle="--", linewidth=1, label=f"median {median:.1f} ms{rate}")
    ax.set(xlabel="time in bag (s)", ylabel="latency (ms)")
    ax.set_ylim(bottom=0)
    fps_ax = ax.twinx()
    if evaluation.rate is not None:
        fps_ax.plot(t, answered_rate(t, evaluation.rate), color="#ff7f0e", label="frames answered per second "
                    "(last 10)")
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            fps = np.where(latency > 0, 1000.0 / latency, np.nan)
        fps_ax.plot(t, rolling_mean(fps, 10), color="#ff7f0e", label="FPS (10-frame mean)")
    fps_ax.set_ylabel("FPS")
    fps_ax.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    fps_lines = fps_ax.get_legend_handles_labels()
    ax.legend(lines[0] + fps_lines[0], lines[1] + fps_lines[1], loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    _save(fig, path)


def answered_rate(seconds: np.ndarray, rate: float, window: int = 10) -> np.ndarray:
    """At each answered frame (its recording time in `seconds`), the frames answered per second of replay over the
    last `window` of them, frames having been sent at `rate` times the recorded pace (NaN for the first)."""
    out = np.full(seconds.shape, np.nan)
    for i in range(1, seconds.size):
        k = min(i, window)
        span = (seconds[i] - seconds[i - k]) / rate
        if span > 0:
            out[i] = k / span
    return out


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """At each position, the mean of the finite values among the last `window` (NaN where there is none): from
    running sums, as a loop over a long drive's frames took seconds of its report."""
    finite = np.isfinite(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(finite, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(finite)))
    start = np.maximum(np.arange(values.size) + 1 - window, 0)
    total, count = sums[1:] - sums[start], counts[1:] - counts[start]
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plot_detection_counts(evaluation: BagEvaluation, path: Path) -> None:
    """Both rows' detections on the frames the detector ran on (every Nth with a detection_interval)."""
    detected = [r for r in evaluation.records if r.detected]
    t = evaluation.seconds_in_bag()[[r.detected for r in evaluation.records]]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.step(t, [len(r.hazy_detections) for r in detected], where="mid", color=HAZY_COLOR, label="hazy input")
    ax.step(t, [len(r.dehazed_detections) for r in detected], where="mid", color=DEHAZED_COLOR,
            label="dehazed output")
    ax.set(xlabel="time in bag (s)", ylabel="detections")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_detection_classes(evaluation: BagEvaluation, path: Path) -> None:
    hazy = [d for r in evaluation.records for d in r.hazy_detections]
    dehazed = [d for r in evaluation.records for d in r.dehazed_detections]
    classes = sorted({d.class_name for d in hazy + dehazed})
    fig, (count_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 3))
    x = np.arange(len(classes))
    for offset, (name, detections, color) in zip((-0.2, 0.2), (("hazy input", hazy, HAZY_COLOR),
                                                               ("dehazed output", dehazed, DEHAZED_COLOR))):
        counts = [sum(d.class_name == c for d in detections) for c in classes]
        scores = [np.mean([d.score for d in detections if d.class_name == c]) if n else 0.0
                  for c, n in zip(classes, counts)]
        count_ax.bar(x + offset, counts, width=0.4, color=color, label=name)
        score_ax.bar(x + offset, scores, width=0.4, color=color, label=name)
    for ax, label in ((count_ax, "detections"), (score_ax, "mean confidence")):
        ax.set_xticks(x, classes, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    score_ax.set_ylim(0, 1)
    count_ax.legend(loc="upper right")
    if not classes:
        count_ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=count_ax.transAxes)
    _save(fig, path)


PLOTTERS = {"haze_density": plot_haze_density, "latency": plot_latency,
            "detection_counts": plot_detection_counts, "detection_classes": plot_detection_classes}
VISIBILITY_FIGURE = ("visibility", "Visibility over time: the node's ~/visibility (Koschmieder's visibility, 3.912 / "
                     "beta, from the dark undersides of road users or the road's transmission; needs the camera's "
                     "mounting; gaps: no fog to measure or no road; open triangles: fog hides the road, the most "
                     "the visibility can be, offline only)")


def plot_visibility(evaluation: BagEvaluation, path: Path) -> None:
    """The visibility per frame; a frame whose fog hides the road (its reading the most the visibility can be)
    as an open downward triangle, not a measurement."""
    t = np.asarray(evaluation.seconds_in_bag())
    visibility = np.array([r.visibility_m for r in evaluation.records], np.float64)
    bound = np.array([r.visibility_at_most is True for r in evaluation.records])
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(t, np.where(bound, np.nan, visibility), color=DEHAZED_COLOR, marker=".", linewidth=1, label="measured")
    if bound.any():
        ax.plot(t[bound], visibility[bound], linestyle="none", marker="v", markerfacecolor="none",
                color=DEHAZED_COLOR, label="at most (fog hides the road)")
        ax.legend(loc="best")
    ax.set(xlabel="time in bag (s)", ylabel="visibility (m)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _save(fig, path)


def write_samples(evaluation: BagEvaluation, figures: Path) -> list[tuple[str, str]]:
    """One PNG per sample frame: hazy input with its detections | dehazed with its detections | depth."""
    out = []
    for sample in sorted(evaluation.samples, key=lambda s: s.index):
        panel = np.concatenate([draw_detections(sample.hazy, sample.hazy_detections),
                                draw_detections(sample.dehazed, sample.dehazed_detections),
                                colorize_depth(sample.depth)], axis=1)
        name = f"sample_{sample.index:06d}.png"
        write_image(figures / name, panel)
        found = (f"hazy input ({_count(sample.hazy_detections, 'detection')}) | dehazed "
                 f"({_count(sample.dehazed_detections, 'detection')})" if sample.detected else
                 "hazy input | dehazed (a frame between two detected ones: detection_interval)")
        caption = (f"frame {sample.index} (stamp {sample.stamp_ns / 1e9:.3f} s): {found} | depth (near red, far "
                   "blue, invalid black)")
        out.append((name, caption))
    return out


def _count(items: list, noun: str) -> str:
    """'1 detection', '3 detections'."""
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _table_html(table: dict[str, dict[str, object]]) -> str:
    columns = list(next(iter(table.values())).keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for name, row in table.items():
        cells = "".join(f"<td>{_cell(row[c])}</td>" for c in columns)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def write_report(evaluation: BagEvaluation, out_dir: Path) -> Path:
    """Write report.html, summary.json and figures/ into `out_dir`; returns the report's path."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name, plotter in PLOTTERS.items():
        plotter(evaluation, figures / f"{name}.png")
    captions = dict(FIGURES)
    if any(math.isfinite(r.visibility_m) for r in evaluation.records):
        plot_visibility(evaluation, figures / f"{VISIBILITY_FIGURE[0]}.png")
        captions[VISIBILITY_FIGURE[0]] = VISIBILITY_FIGURE[1]
    samples = write_samples(evaluation, figures)
    summary = evaluation.summary()
    write_json(out_dir / "summary.json", summary)
    read = (f"{evaluation.frames_in_bag} in the bag" if evaluation.frames_in_window is None
            else f"{evaluation.frames_in_window} in the window ({evaluation.frames_in_bag} in the bag)")
    settings = [("input bag", evaluation.input_bag), ("image topic", evaluation.image_topic),
                ("camera info topic", evaluation.camera_info_topic or "none"), ("mode", evaluation.mode),
                ("method", f"{evaluation.method} ({evaluation.backend})"), ("weights", summary["weights"]),
                ("detector", evaluation.detector or "none"),
                ("frames", f"{len(evaluation.records)} evaluated of {read}, {len(evaluation.skipped)} skipped"
                           + (f", {evaluation.frames_dropped} dropped by the node" if evaluation.rate is not None
                              else "")),
                ("pace", evaluation.pace),
                *([("stopped early", evaluation.stopped)] if evaluation.stopped else []),
                ("output bag", f"{evaluation.output_bag} (images {evaluation.output_images})"),
                ("machine", "{processor}, {cpu_count} CPUs, load {load_average_1min:.1f} at the end".format(
                    **summary["machine"]))]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dgdehaze bag evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#444}</style></head><body>",
        f"<h1>dgdehaze bag evaluation: {html.escape(Path(evaluation.input_bag).name)}</h1>",
        "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td>"
                            f"</tr>" for k, v in settings) + "</table>",
        "<h2>Figures</h2>", _table_html(evaluation.table()),
        "<p>hazy: the detector on the input frames (latency: detection alone). dehazed: the node's output "
        "(latency: dehazing plus detection). haze_density: mean dark-channel density, 0 clear to 1 dense.</p>",
    ]
    if summary["output_latency_ms"]:
        parts += ["<p>Latency to each of the node's outputs (ms from sending the frame; the dehazed row's latency is "
                  "the last of them): an output far behind the others is held up on its way, not by the node.</p>",
                  _table_html(summary["output_latency_ms"])]
    parts += [f"<p><b>Note:</b> {html.escape(note)}</p>" for note in evaluation.notes]
    parts.append("<h2>Before and after</h2>")
    parts += [f"<figure><img src='figures/{name}' alt='{name}'><figcaption>{html.escape(caption)}</figcaption>"
              f"</figure>" for name, caption in samples]
    parts.append("<h2>Over the drive</h2>")
    parts += [f"<figure><img src='figures/{name}.png' alt='{name}'><figcaption>{html.escape(caption)}"
              f"</figcaption></figure>" for name, caption in captions.items()]
    if evaluation.skipped:
        parts.append("<h2>Skipped frames</h2><ul>" +
                     "".join(f"<li>{html.escape(s)}</li>" for s in evaluation.skipped) + "</ul>")
    parts.append(f"<h2>Table (text)</h2><pre>{html.escape(format_table(evaluation.table()))}</pre></body></html>")
    report = out_dir / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8", errors="backslashreplace")
    return report
