import json
import math
import random

import numpy as np
import pytest

from training.evaluation import (
    EvaluationError,
    boundary_errors,
    evaluate,
    evaluate_files,
    interpolated_ap,
    parse_tious,
    segment_tiou,
)
from training.synthetic import THUMOS14_ANNOTATIONS

THUMOS_JSON = THUMOS14_ANNOTATIONS
TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


def annotations(videos: dict[str, list[tuple[float, float, str]]], subset: str = "Test") -> dict:
    return {
        "database": {
            video_id: {
                "subset": subset,
                "duration": 100.0,
                "fps": 30.0,
                "annotations": [{"segment": [s, e], "label": label} for s, e, label in items],
            }
            for video_id, items in videos.items()
        }
    }


def results(videos: dict[str, list[tuple[float, float, str, float]]]) -> dict:
    return {
        "results": {
            video_id: [{"segment": [s, e], "label": label, "score": score} for s, e, label, score in items]
            for video_id, items in videos.items()
        }
    }


# ------------------------------------------------------------------------------ brute-force twin


def brute_tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def brute_ap(outcomes, num_positives):
    """outcomes: list of 'tp' / 'fp' / 'ignore' in score order."""
    tp = fp = 0
    precisions, recalls = [], []
    for outcome in outcomes:
        if outcome == "ignore":
            continue
        tp += outcome == "tp"
        fp += outcome == "fp"
        precisions.append(tp / (tp + fp))
        recalls.append(tp / num_positives)
    ap, previous_recall = 0.0, 0.0
    for i, recall in enumerate(recalls):
        if recall != previous_recall:
            ap += (recall - previous_recall) * max(precisions[i:])
            previous_recall = recall
    return ap


def brute_class_ap(gts, preds, threshold, positive=lambda gt: True):
    """gts: [(video, s, e)], preds: [(video, s, e, score)] of one class."""
    ranked = sorted(preds, key=lambda p: -p[3])  # Python's sort is stable
    taken = [False] * len(gts)
    outcomes = []
    for video, s, e, _ in ranked:
        best, best_tiou = None, -1.0
        for j, (gt_video, gs, ge) in enumerate(gts):
            if gt_video != video or taken[j]:
                continue
            overlap = brute_tiou((s, e), (gs, ge))
            if overlap >= threshold and overlap > best_tiou:
                best, best_tiou = j, overlap
        if best is None:
            outcomes.append("fp")
        else:
            taken[best] = True
            outcomes.append("tp" if positive(gts[best]) else "ignore")
    return brute_ap(outcomes, sum(1 for gt in gts if positive(gt)))


def brute_map(gt_videos, pred_videos, thresholds, positive=lambda gt: True):
    labels = sorted({label for items in gt_videos.values() for *_, label in items})
    per_threshold = []
    for threshold in thresholds:
        aps = []
        for label in labels:
            gts = [(v, s, e) for v, items in gt_videos.items() for s, e, lab in items if lab == label]
            if not any(positive(gt) for gt in gts):
                continue
            preds = [(v, s, e, sc) for v, items in pred_videos.items() for s, e, lab, sc in items if lab == label]
            aps.append(brute_class_ap(gts, preds, threshold, positive))
        per_threshold.append(100.0 * sum(aps) / len(aps))
    return per_threshold


def random_case(rng: random.Random):
    labels = ["a", "b", "c"]
    gt_videos, pred_videos = {}, {}
    for v in range(rng.randint(1, 4)):
        video_id = f"v{v}"
        gt_videos[video_id] = []
        for _ in range(rng.randint(1, 6)):
            start = rng.uniform(0, 80)
            gt_videos[video_id].append((start, start + rng.uniform(0.5, 9), rng.choice(labels)))
        pred_videos[video_id] = []
        for _ in range(rng.randint(0, 12)):
            if gt_videos[video_id] and rng.random() < 0.6:  # jittered copy of a ground truth
                s, e, label = rng.choice(gt_videos[video_id])
                s, e = s + rng.gauss(0, 1), e + rng.gauss(0, 1)
                s, e = min(s, e), max(s, e)
            else:
                s = rng.uniform(0, 80)
                s, e, label = s, s + rng.uniform(0.5, 9), rng.choice(labels)
            pred_videos[video_id].append((s, e, label, rng.choice([0.1, 0.5, 0.5, 0.9, rng.random()])))
    return gt_videos, pred_videos


@pytest.mark.parametrize("seed", range(40))
def test_map_matches_brute_force_on_random_cases(seed):
    gt_videos, pred_videos = random_case(random.Random(seed))
    result = evaluate(annotations(gt_videos), results(pred_videos), "test", TIOUS, unknown_labels="ignore")
    assert list(result["mAP"].values()) == pytest.approx(brute_map(gt_videos, pred_videos, TIOUS), abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_short_action_bins_match_brute_force_on_random_cases(seed):
    gt_videos, pred_videos = random_case(random.Random(seed))
    result = evaluate(annotations(gt_videos), results(pred_videos), "test", TIOUS, unknown_labels="ignore")
    for name, (low, high) in {"<=3s": (0, 3), "3-6s": (3, 6)}.items():
        in_bin = lambda gt, low=low, high=high: low < gt[2] - gt[1] <= high  # noqa: E731
        if not any(in_bin((None, s, e)) for items in gt_videos.values() for s, e, _ in items):
            assert result["short_actions"][name] is None
            continue
        expected = sum(brute_map(gt_videos, pred_videos, TIOUS, in_bin)) / len(TIOUS)
        assert result["short_actions"][name] == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------- hand-made answers


def test_perfect_predictions_give_100():
    gt = {"v1": [(1, 5, "a"), (10, 20, "b")], "v2": [(5, 7, "a")]}
    pred = {v: [(s, e, label, 0.9) for s, e, label in items] for v, items in gt.items()}
    result = evaluate(annotations(gt), results(pred), "Test", TIOUS)
    assert result["mAP"] == {"0.30": 100.0, "0.40": 100.0, "0.50": 100.0, "0.60": 100.0, "0.70": 100.0}
    assert result["average"] == 100.0
    assert result["short_actions"] == {"<=3s": 100.0, "3-6s": 100.0}
    assert (result["num_videos"], result["num_ground_truth"], result["num_predictions"]) == (2, 3, 3)


def test_false_positive_between_true_positives():
    # ranks: TP, FP, TP over 2 ground truths -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # envelope: 1 up to recall 1/2, then 2/3 -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6
    gt = {"v": [(0, 10, "a"), (20, 30, "a")]}
    pred = {"v": [(0, 10, "a", 0.9), (50, 60, "a", 0.8), (20, 30, "a", 0.7)]}
    result = evaluate(annotations(gt), results(pred), "test", [0.5])
    assert result["mAP"]["0.50"] == pytest.approx(100 * 5 / 6)


def test_false_positive_ranked_first_halves_single_ap():
    gt = {"v": [(0, 10, "a")]}
    pred = {"v": [(50, 60, "a", 0.9), (0, 10, "a", 0.8)]}
    assert evaluate(annotations(gt), results(pred), "test", [0.5])["average"] == pytest.approx(50.0)


def test_duplicate_detection_is_a_false_positive_after_full_recall():
    gt = {"v": [(0, 10, "a")]}
    pred = {"v": [(0, 10, "a", 0.9), (0, 9.5, "a", 0.8)]}
    result = evaluate(annotations(gt), results(pred), "test", [0.5])
    assert result["average"] == pytest.approx(100.0)


def test_threshold_decides_true_or_false_positive():
    gt = {"v": [(0, 10, "a")]}
    pred = {"v": [(5, 15, "a", 0.9)]}  # tIoU = 5 / 15 = 0.333
    result = evaluate(annotations(gt), results(pred), "test", TIOUS)
    assert result["mAP"] == {"0.30": 100.0, "0.40": 0.0, "0.50": 0.0, "0.60": 0.0, "0.70": 0.0}
    assert result["average"] == pytest.approx(20.0)


def test_prediction_takes_highest_tiou_ground_truth_not_first():
    # [7, 17] overlaps A=[0, 10] (tIoU 0.18) and B=[8, 20] (0.69); it must take B so [0, 9] can take A
    gt = {"v": [(0, 10, "a"), (8, 20, "a")]}
    pred = {"v": [(7, 17, "a", 0.9), (0, 9, "a", 0.8)]}
    assert evaluate(annotations(gt), results(pred), "test", [0.1])["average"] == pytest.approx(100.0)


def test_ties_keep_input_order():
    gt = {"v": [(0, 10, "a")]}
    false_first = {"v": [(50, 60, "a", 0.5), (0, 10, "a", 0.5)]}
    true_first = {"v": [(0, 10, "a", 0.5), (50, 60, "a", 0.5)]}
    assert evaluate(annotations(gt), results(false_first), "test", [0.5])["average"] == pytest.approx(50.0)
    assert evaluate(annotations(gt), results(true_first), "test", [0.5])["average"] == pytest.approx(100.0)


def test_empty_predictions_give_zero():
    gt = {"v": [(0, 10, "a"), (20, 25, "b")]}
    result = evaluate(annotations(gt), {"results": {}}, "test", TIOUS)
    assert result["average"] == 0.0 and result["num_predictions"] == 0
    assert result["short_actions"] == {"<=3s": None, "3-6s": 0.0}


def test_class_without_predictions_counts_as_zero():
    gt = {"v": [(0, 10, "a"), (20, 30, "b")]}
    pred = {"v": [(0, 10, "a", 0.9)]}
    result = evaluate(annotations(gt), results(pred), "test", [0.5])
    assert result["average"] == pytest.approx(50.0)
    assert result["per_class"] == {"a": 100.0, "b": 0.0}


def test_prediction_in_other_video_does_not_match():
    gt = {"v1": [(0, 10, "a")], "v2": []}
    pred = {"v2": [(0, 10, "a", 0.9)]}
    assert evaluate(annotations(gt), results(pred), "test", [0.5])["average"] == 0.0


def test_short_bin_ignores_predictions_matching_longer_actions():
    # a 2 s and a 10 s action; the 10 s one is found with the highest score, the 2 s one second:
    # for "<=3s" the first prediction is ignored (not a false positive), so that bin's AP is 100
    gt = {"v": [(0, 2, "a"), (20, 30, "a")]}
    pred = {"v": [(20, 30, "a", 0.9), (0, 2, "a", 0.8)]}
    result = evaluate(annotations(gt), results(pred), "test", [0.5])
    assert result["short_actions"]["<=3s"] == pytest.approx(100.0)
    assert result["short_actions"]["3-6s"] is None


def test_short_bin_counts_unmatched_predictions_as_false_positives():
    gt = {"v": [(0, 2, "a")]}
    pred = {"v": [(50, 52, "a", 0.9), (0, 2, "a", 0.8)]}
    assert evaluate(annotations(gt), results(pred), "test", [0.5])["short_actions"]["<=3s"] == pytest.approx(50.0)


# -------------------------------------------------------------------------- filtering, errors


def test_predictions_outside_split_or_classes_are_ignored_and_counted():
    data = annotations({"v": [(0, 10, "a")]})
    data["database"]["other"] = {"subset": "Validation", "annotations": [{"segment": [0, 5], "label": "b"}]}
    pred = results({"v": [(0, 10, "a", 0.9), (0, 10, "b", 0.95)], "other": [(0, 5, "b", 0.9)]})
    result = evaluate(data, pred, "TEST", [0.5])
    assert result["average"] == pytest.approx(100.0)
    assert result["num_predictions"] == 1
    assert result["num_ignored_predictions"] == {
        "video_not_in_split": 1,
        "label_not_in_split": 1,
        "unknown_label": 0,
    }


def test_unknown_label_is_an_error_naming_it():
    pred = results({"v": [(0, 10, "7", 0.9)]})
    with pytest.raises(EvaluationError, match="label '7'"):
        evaluate(annotations({"v": [(0, 10, "a")]}), pred, "test", [0.5])


def test_unknown_label_can_be_ignored():
    pred = results({"v": [(0, 10, "7", 0.9)]})
    result = evaluate(annotations({"v": [(0, 10, "a")]}), pred, "test", [0.5], unknown_labels="ignore")
    assert result["num_ignored_predictions"]["unknown_label"] == 1


def test_empty_split_lists_available_subsets():
    with pytest.raises(EvaluationError, match=r"subsets in the annotations: \['Test'\]"):
        evaluate(annotations({"v": [(0, 10, "a")]}), {"results": {}}, "training", [0.5])


def test_malformed_prediction_names_the_video():
    pred = {"results": {"v": [{"segment": [10, 0], "label": "a", "score": 0.5}]}}
    with pytest.raises(EvaluationError, match="video 'v'"):
        evaluate(annotations({"v": [(0, 10, "a")]}), pred, "test", [0.5])


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(EvaluationError, match="nope.json"):
        evaluate_files(tmp_path / "nope.json", tmp_path / "nope.json", "test")


# ------------------------------------------------------------------------------- small pieces


def test_interpolated_ap_known_values():
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(5 / 6)
    assert interpolated_ap(np.array([0.0, 0.5]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_segment_tiou():
    candidates = np.array([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0], [2.0, 2.0]])
    assert segment_tiou(np.array([0.0, 10.0]), candidates) == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


def test_parse_tious():
    assert parse_tious("0.3:0.1:0.7") == (0.3, 0.4, 0.5, 0.6, 0.7)
    assert parse_tious("0.5, 0.75") == (0.5, 0.75)
    assert len(parse_tious("0.5:0.05:0.95")) == 10


def test_real_thumos_ground_truth_as_predictions_gives_100(tmp_path):
    data = json.loads(THUMOS_JSON.read_text())
    pred = {
        "results": {
            video_id: [{"segment": a["segment"], "label": a["label"], "score": 1.0} for a in info["annotations"]]
            for video_id, info in data["database"].items()
            if info["subset"] == "Test"
        }
    }
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(pred))
    result = evaluate_files(THUMOS_JSON, path, "test")
    assert result["average"] == pytest.approx(100.0)
    assert result["num_videos"] == 212 and result["num_classes"] == 20
    assert result["num_ground_truth"] == result["num_predictions"]


# ------------------------------------------------------------------------------ boundary errors


def brute_boundary_errors(gt_videos, pred_videos, min_tiou):
    rows = []
    for video_id, items in gt_videos.items():
        for gs, ge, label in items:
            best = None
            for s, e, pred_label, score in pred_videos.get(video_id, []):
                overlaps = pred_label == label and brute_tiou((s, e), (gs, ge)) >= min_tiou
                if overlaps and (best is None or score > best[2]):
                    best = (s, e, score)
            rows.append((math.nan, math.nan) if best is None else (best[0] - gs, best[1] - ge))
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_boundary_errors_match_brute_force_on_random_cases(seed):
    gt_videos, pred_videos = random_case(random.Random(seed))
    errors = boundary_errors(annotations(gt_videos), results(pred_videos), "test", min_tiou=0.5)
    expected = np.array(brute_boundary_errors(gt_videos, pred_videos, 0.5), dtype=np.float64).reshape(-1, 2)
    np.testing.assert_allclose(errors, expected, atol=1e-12)


def test_boundary_errors_take_the_highest_scoring_match_and_are_signed():
    gt = {"v": [(10, 20, "a"), (40, 50, "a")]}
    pred = {"v": [(11, 19, "a", 0.5), (9, 21.5, "a", 0.9), (10, 20, "b", 1.0), (70, 80, "a", 0.99)]}
    errors = boundary_errors(annotations(gt), results(pred), "test")
    np.testing.assert_allclose(errors[0], [-1.0, 1.5])  # the 0.9 detection, not the better-placed 0.5 one
    assert np.isnan(errors[1]).all()  # no detection of label "a" overlaps [40, 50]
