"""The zoom benchmark's report (experiments/zoom.py): targets judged from the runs, the uniform curve, the page."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from experiments.zoom import above_uniform, page, paired, targets

KEYS = ("mAP@0.3", "mAP@0.4", "mAP@0.5", "mAP@0.6", "mAP@0.7", "mAP@0.8", "mAP@0.9", "average")


def row(seed: int, gflops: float, map07: float, map09: float, average: float, std: float = 10.0) -> dict:
    values = dict.fromkeys(KEYS, 50.0) | {"mAP@0.7": map07, "mAP@0.9": map09, "average": average}
    return {
        "seed": seed,
        **values,
        "error_std_frames": std,
        "R_ramped": 0.8,
        "gflops_per_min": gflops,
        "frames_per_min": gflops,
    }


def result(fine_map09: tuple[float, float]) -> dict:
    runs = {
        "uniform 4 fps": [row(s, 200, 60, 20, 60) for s in (0, 1)],
        "uniform 8 fps": [row(s, 400, 70, 30, 70) for s in (0, 1)],
        "uniform 16 fps": [row(s, 800, 72, 40, 72) for s in (0, 1)],
        "zoom-fine": [row(s, 380, 69.8, m, 69.9, std=5.0) for s, m in zip((0, 1), fine_map09, strict=True)],
        "zoom-fine, refiner bdr": [row(s, 380, 69, 31, 69) for s in (0, 1)],
        "zoom-fine, refiner none": [row(s, 380, 65, 20, 65) for s in (0, 1)],
    }
    chosen = {
        "zoom-fine": {"coarse_fps": 4, "zoom_fps": 16, "window_s": 0.5, "min_score": 0.3, "refiner": "regression"}
    }
    return {"test": runs, "choice": {"chosen": chosen, "grid": []}, "wall": {}, "seeds": [0, 1],
            "command": "python -m experiments.zoom", "date": "2026-12-04", "machine": "2 CPU threads"}  # fmt: skip


def test_paired_differences_are_per_seed():
    runs = result((34.0, 36.0))["test"]
    mean, std, values = paired(runs, "zoom-fine", "mAP@0.9", "uniform 8 fps")
    assert values == [4.0, 6.0] and mean == 5.0 and std == pytest.approx(2**0.5)


def test_a_point_is_above_the_uniform_curve_by_its_distance_at_its_cost():
    runs = result((34.0, 36.0))["test"]
    # at 380 GFLOPs the uniform curve (linear in log GFLOPs between 4 and 8 fps) is just under 70 / 30
    expected = 35 - (20 + 10 * math.log(380 / 200) / math.log(400 / 200))
    assert above_uniform(runs, "zoom-fine", "mAP@0.9") == pytest.approx(expected)
    assert above_uniform(runs, "zoom-fine", "mAP@0.7") > 0


def test_a_uniform_curve_is_not_extended_past_its_measured_rates():
    runs = result((34.0, 36.0))["test"]
    dearer = [{**row, "gflops_per_min": 1000.0} for row in runs["zoom-fine"]]  # past uniform 16 fps (800)
    assert above_uniform({**runs, "zoom-fine": dearer}, "zoom-fine", "mAP@0.9") is None
    line = next(line for line in targets({**result((34.0, 36.0)), "test": {**runs, "zoom-fine": dearer}})
                if line.startswith("| 3:"))  # fmt: skip
    assert "n/a (no curve spans its cost)" in line and line.endswith("| no |")


@pytest.mark.parametrize(("map09", "met"), [((34.0, 36.0), "yes"), ((31.0, 33.0), "no")])
def test_target_2_needs_three_points_at_mAP_0_9_and_a_smaller_error_spread(map09, met):
    lines = targets(result(map09))
    line = next(line for line in lines if line.startswith("| 2:"))
    assert line.endswith(f"| {met} |") and "0.950x" in line and "std 0.500x" in line
    bdr = next(line for line in lines if line.startswith("| 4:"))
    assert bdr.endswith("| no |")  # the BDR refiner is below the regression here
    assert "zoom-fine" in page(result(map09))


def test_the_served_variants_are_named_as_the_test_table_names_them():
    from experiments.zoom import PER_FRAME, SMALL_FRAMES, uniform_name

    assert uniform_name(8) == "uniform 8 fps" and uniform_name(30.0) == "uniform 30 fps"
    assert uniform_name(4, "frames") == f"uniform 4 fps{PER_FRAME}"
    assert uniform_name(16, "frames", 64) == f"uniform 16 fps{SMALL_FRAMES}"


@pytest.mark.parametrize("flag", ["--wall-again", "--keep-test"])
def test_rerun_flags_without_an_earlier_run_are_refused(flag, tmp_path, capsys):
    from experiments import zoom, zoom_space

    for module in (zoom, zoom_space):
        with pytest.raises(SystemExit) as stopped:
            module.main(["--workdir", str(tmp_path), flag])
        assert stopped.value.code == 2 and "go with --choice-from" in capsys.readouterr().err


def test_a_rerun_keeps_what_its_flags_keep_and_measures_the_rest(tmp_path):
    """`measured`: --choice-from keeps the validation choice; --keep-test its test rows and seeds; --wall-again
    times the served path again, which is otherwise kept; --no-wall leaves wall times out, even an earlier run's."""
    from experiments.zoom import measured

    earlier = {"choice": {"chosen": {"zoom-lite": {}}}, "seeds": [0, 1], "test": {"old": []}, "wall": {"old": 1}}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    calls = []

    def run(choice_from=None, keep_test=False, wall_again=False, no_wall=False) -> dict:
        args = argparse.Namespace(choice_from=choice_from and tmp_path / "earlier.json", keep_test=keep_test,
                                  wall_again=wall_again, no_wall=no_wall, seeds=[3])  # fmt: skip
        return measured(
            None, args, "command", lambda: calls.append("choose") or {"chosen": {"new": {}}},
            lambda bench, seeds, chosen, log: calls.append(("test", seeds, list(chosen))) or {"new": []},
            lambda chosen: calls.append(("wall", list(chosen))) or {"new": 2}, lambda line: None,
        )  # fmt: skip

    fresh = run()
    assert (fresh["seeds"], fresh["test"], fresh["wall"]) == ([3], {"new": []}, {"new": 2})
    assert calls == ["choose", ("test", [3], ["new"]), ("wall", ["new"])]
    calls.clear()
    assert run(no_wall=True)["wall"] == {} and ("wall", ["new"]) not in calls
    calls.clear()
    again = run(choice_from=True, keep_test=True, wall_again=True)
    assert (again["choice"], again["seeds"], again["test"]) == (earlier["choice"], [0, 1], {"old": []})
    assert again["wall"] == {"new": 2} and calls == [("wall", ["zoom-lite"])]
    calls.clear()
    kept = run(choice_from=True)
    assert kept["wall"] == {"old": 1} and kept["test"] == {"new": []} and calls == [("test", [3], ["zoom-lite"])]
    assert run(choice_from=True, no_wall=True)["wall"] == {}
