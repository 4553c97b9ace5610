"""The pure helpers of experiments/results.py (the benchmark itself is run by hand, not in CI)."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.results import (
    VARIANTS,
    curve_at,
    format_mean_std,
    ground_truth_widths,
    margin_over_curve,
    mean_std,
    paired,
    plot_curve,
    redecoded_checkpoint,
    relative,
    render,
    run_config,
    selected_variants,
    stale,
    summarize,
    variance_ratio,
    window,
)
from training.evaluation import boundary_errors
from training.train import RESOLVED_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def test_mean_std_is_sample_std_and_skips_missing_values():
    assert mean_std([1.0, 2.0, 3.0, None, math.nan]) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0]) == (4.0, 0.0)
    assert mean_std([None]) is None


def test_format_mean_std_shows_std_only_over_several_seeds():
    assert format_mean_std((1.234, 0.5), 2, seeds=3) == "1.23 ± 0.50"
    assert format_mean_std((1.234, 0.0), 2, seeds=1) == "1.23"
    assert format_mean_std(None) == "–"


def test_window_crops_and_wraps_around_like_tiling():
    stream = np.arange(10)[:, None] * np.ones((1, 3))
    np.testing.assert_array_equal(window(stream, 2, 4)[:, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(window(stream, 8, 25)[:, 0], [(8 + i) % 10 for i in range(25)])


def test_variance_ratio_uses_only_boundaries_both_runs_matched():
    errors = np.array([[1.0, -1.0], [np.nan, 100.0], [1.0, -1.0]])
    reference = np.array([[2.0, -2.0], [0.0, np.nan], [2.0, -2.0]])
    ratio, count = variance_ratio(errors, reference)
    assert count == 4
    assert ratio == pytest.approx(0.25)  # same boundaries, half the spread


def test_variance_ratio_is_nan_without_enough_common_boundaries():
    ratio, count = variance_ratio(np.array([[1.0, np.nan]]), np.array([[1.0, 2.0]]))
    assert math.isnan(ratio) and count == 1


def test_ground_truth_widths_follow_boundary_errors_order():
    annotations = {
        "database": {
            "a": {"subset": "test", "annotations": [{"segment": [1, 2], "label": "x", "boundary_widths": [0, 6]}]},
            "b": {
                "subset": "validation",
                "annotations": [{"segment": [1, 2], "label": "x", "boundary_widths": [2, 2]}],
            },
            "c": {
                "subset": "Test",
                "annotations": [
                    {"segment": [5, 9], "label": "x", "boundary_widths": [12, 0]},
                    {"segment": [20, 30], "label": "x"},
                ],
            },
        }
    }
    predictions = {"results": {"c": [{"segment": [5.5, 9], "label": "x", "score": 0.9}]}}
    widths = ground_truth_widths(annotations, "test")
    errors = boundary_errors(annotations, predictions, "test")
    np.testing.assert_array_equal(widths, [[0, 6], [12, 0], [-1, -1]])
    assert len(errors) == len(widths)
    np.testing.assert_allclose(errors[1], [0.5, 0.0])  # the [5, 9] action of video c, second in both


def test_relative_divides_by_the_baseline():
    assert relative({"base": 2.0, "other": 3.0, "missing": None}, "base") == {
        "base": 1.0,
        "other": 1.5,
        "missing": None,
    }


def test_selected_variants_add_baseline_reference_and_teacher():
    assert selected_variants(["tzn_distilled"]) == ["uniform6", "uniform6_bdr", "uniform6_cls", "tzn_distilled"]
    assert selected_variants(["uniform3"]) == ["uniform6", "uniform3"]
    assert selected_variants(["atr"]) == ["uniform6", "atr"]
    # a decoding ablation needs the run whose checkpoint it re-decodes, trained before it
    assert selected_variants(["tzn_votes"]) == ["uniform6", "uniform6_cls", "tzn", "tzn_votes"]


def test_a_redecoded_checkpoint_changes_only_its_postprocess_settings(tmp_path):
    source = tmp_path / "tzn"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"weights")
    (source / "config.json").write_text('{"model": {"atr": true}, "postprocess": {"snap": false, "sigma": 0.5}}')
    redecoded_checkpoint(source, tmp_path / "tzn_votes", {"snap": True, "bdr_decode": "votes"})
    written = json.loads((tmp_path / "tzn_votes" / "config.json").read_text())
    assert written == {"model": {"atr": True}, "postprocess": {"snap": True, "sigma": 0.5, "bdr_decode": "votes"}}
    assert (tmp_path / "tzn_votes" / "model.safetensors").read_bytes() == b"weights"


def _finished_run(run_dir, config) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / RESOLVED_CONFIG).write_text(yaml.safe_dump(config.dump(), sort_keys=False))


def test_a_finished_run_is_stale_when_the_recipe_changed_a_setting_it_uses(tmp_path):
    config_path = ROOT / "configs" / "synthetic_cpu.yaml"
    annotations, features = tmp_path / "annotations.json", tmp_path / "features"

    def config(name, **model):
        variant = VARIANTS[name]
        variant = dataclasses.replace(variant, model={**variant.model, **model})
        return variant, run_config(config_path, variant, annotations, features, 0, 2, None)

    for name in ("uniform6", "tzn"):
        variant, old = config(name, boundary_detach=False)
        _finished_run(tmp_path / name, old)
        assert stale(tmp_path / name, old, variant) == []
    # the recipe turns boundary_detach on: TZN must be retrained, Uniform-6 (no boundary head) need not be
    variant, new = config("tzn", boundary_detach=True)
    assert stale(tmp_path / "tzn", new, variant) == ["model.boundary_detach"]
    variant, new = config("uniform6", boundary_detach=True)
    assert stale(tmp_path / "uniform6", new, variant) == []
    variant, longer = config("uniform6")
    longer = longer.model_copy(update={"optimizer": longer.optimizer.model_copy(update={"epochs": 3})})
    assert stale(tmp_path / "uniform6", longer, variant) == ["optimizer.epochs"]
    assert stale(tmp_path / "missing", new, variant) == [f"no {RESOLVED_CONFIG}"]


def test_a_decoding_ablation_is_stale_once_its_source_is_retrained(tmp_path):
    source = tmp_path / "tzn"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"weights")
    (source / "config.json").write_text('{"model": {}, "postprocess": {}}')
    variant = VARIANTS["tzn_votes"]
    redecoded_checkpoint(source, tmp_path / "tzn_votes", variant.postprocess)
    assert stale(tmp_path / "tzn_votes", None, variant) == []
    (source / "model.safetensors").write_bytes(b"retrained")
    assert stale(tmp_path / "tzn_votes", None, variant) == ["tzn was retrained"]


def _row(average: float) -> dict:
    return {
        "mAP": {f"{t:.2f}": average for t in (0.3, 0.4, 0.5, 0.6, 0.7)},
        "average": average,
        "short_actions": {"<=3s": average / 2, "3-6s": None},
        "train_seconds": 100.0,
        "train_cost": 1.0,
        "gflops_2304": 2.0,
        "latency_ratio": 1.0,
        "latency_ms_2304": 40.0,
        "R": 0.5,
        "test_mean_depth": 6.0,
    }


def test_paired_differences_are_per_seed_and_skip_missing_runs():
    per_seed = {0: {"a": {"v": 3.0}, "b": {"v": 1.0}}, 1: {"b": {"v": 2.0}}, 2: {"a": {"v": 1.0}, "b": {"v": 4.0}}}
    assert paired(per_seed, "a", "b", lambda row: row["v"]) == [2.0, None, -3.0]


def loop_curve_at(xs, ys, x):
    points = sorted(zip(xs, ys, strict=True))
    for i in range(len(points) - 1):
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[0][1] if x == points[0][0] else None


@pytest.mark.parametrize("x", [0.5, 1.0, 1.25, 1.9, 2.0, 3.0, 3.5])
def test_curve_at_interpolates_like_a_loop_and_is_none_outside(x):
    xs, ys = [3.0, 1.0, 2.0], [60.0, 40.0, 55.0]
    assert curve_at(xs, ys, x) == loop_curve_at(xs, ys, x)


def test_margin_over_curve_compares_at_equal_flops():
    summary = {
        "uniform6": {"mAP@0.70": (60.0, 1.0), "gflops_2304": (2.0, 0.0)},
        "uniform2": {"mAP@0.70": (40.0, 1.0), "gflops_2304": (1.0, 0.0)},
        "tzn": {"mAP@0.70": (55.0, 1.0), "gflops_2304": (1.5, 0.0)},
    }
    assert margin_over_curve(summary, ["uniform6", "uniform2", "tzn"], "tzn") == pytest.approx(5.0)
    # a cheaper uniform model that scores higher than the line is what the adaptive one has to beat
    summary["uniform1"] = {"mAP@0.70": (58.0, 1.0), "gflops_2304": (0.5, 0.0)}
    assert margin_over_curve(summary, ["uniform6", "uniform2", "uniform1", "tzn"], "tzn") == pytest.approx(-3.0)


def test_summarize_and_render_give_one_row_per_variant_and_a_generated_reading():
    variants = ["uniform6", "tzn"]
    per_seed = {0: {"uniform6": _row(50.0), "tzn": _row(52.0)}, 1: {"uniform6": _row(54.0), "tzn": _row(52.0)}}
    summary = summarize(per_seed, variants)
    assert summary["uniform6"]["mAP@0.70"] == pytest.approx((52.0, math.sqrt(8.0)))
    assert summary["tzn"]["short3-6s"] is None
    document = {
        "date": "today",
        "command": "python experiments/results.py --seeds 0 1",
        "machine": {"cpu_count": 2},
        "settings": {"config": "c.yaml", "epochs": None, "data": {"videos": 4}, "repeats": 1, "windows": 1},
        "variants": variants,
        "per_seed": per_seed,
        "summary": summary,
        "paper_comparison": [("TZN - Uniform-6, mAP@0.7 (points)", "+2.9", [2.0, -2.0])],
        "json_name": "results.json",
    }
    markdown = render(document)
    assert f"| {VARIANTS['uniform6'].label} | 52.0 ± 2.8 |" in markdown
    assert "python experiments/results.py --seeds 0 1" in markdown
    reading = markdown.split("## Reading")[1]
    assert "TZN - Uniform-6 at mAP@0.7 >= +2 points: +0.00 -> **not met**" in reading


def test_plot_curve_draws_the_uniform_curve_and_the_tzn_points_as_a_png(tmp_path):
    variants = ["uniform6", "uniform3", "tzn"]
    summary = {
        name: {"mAP@0.70": (value, 1.0), "gflops_2304": (flops, 0.0)}
        for name, value, flops in (("uniform6", 60.0, 1.6), ("uniform3", 50.0, 1.0), ("tzn", 58.0, 1.2))
    }
    path = tmp_path / "curve.png"
    plot_curve({"summary": summary, "variants": variants, "per_seed": {0: {}}}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fade_shorter_than_one_second_is_not_a_sharp_cut():
    """The zoom benchmark's widths are seconds (0.3-2 s fades): 0.4 s is a fade, not 0 (a sharp cut)."""
    annotations = {"database": {"v": {"subset": "test", "annotations": [
        {"segment": [1, 4], "label": "x", "boundary_widths": [0.4, 0.0]}]}}}  # fmt: skip
    widths = ground_truth_widths(annotations, "test")
    assert widths.tolist() == [[0.4, 0.0]] and (widths > 0).tolist() == [[True, False]]
