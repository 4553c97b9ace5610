"""Detection mAP under the ActivityNet protocol, plus mAP restricted to short actions.

Protocol (ActivityNet's `eval_detection.py`, re-written here):
- per class, predictions of all videos are sorted by score, descending; ties keep input order
  (videos in the order of the results dict, then list order), so the result is deterministic;
- each prediction is matched greedily to the unmatched ground truth of the same video and class with the
  highest tIoU, if that tIoU is >= the threshold; otherwise it is a false positive;
- AP is the all-point interpolated area under the precision/recall curve (`interpolated_ap`);
- mAP at a threshold is the mean AP over the classes present in the split's ground truth.

Predictions are filtered, not rejected, where ActivityNet filters them: predictions for videos outside the
split, and predictions whose label is a class of the annotation file that has no ground truth in this split,
are ignored and counted in `num_ignored_predictions`. A label that no video of the annotation file carries is
almost always a label-map bug (ids instead of names, a typo) that would silently read as 0 mAP, so it is an
`EvaluationError` unless `unknown_labels="ignore"`.

Short actions (DETAD-style sensitivity): for a bin of ground-truth durations, AP is computed with the
bin's ground truths as the positives. Matching still runs against all ground truths of the class, so a
prediction whose match is a ground truth outside the bin is neither a true nor a false positive (it is
ignored); unmatched predictions stay false positives. The mean is over classes with at least one ground
truth in the bin. Bins: "<=3s" is duration <= 3 s, "3-6s" is 3 s < duration <= 6 s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

THUMOS_TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SHORT_ACTION_BINS = {"<=3s": (0.0, 3.0), "3-6s": (3.0, 6.0)}  # (low, high]: low < duration <= high


class EvaluationError(ValueError):
    """Annotations or predictions that cannot be evaluated; the message names the video or label."""


# ---------------------------------------------------------------------------------------------- math


def segment_tiou(segment: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one segment (2,) with each of `candidates` (M, 2), same units; (M,) in [0, 1]."""
    left = np.maximum(segment[0], candidates[:, 0])
    right = np.minimum(segment[1], candidates[:, 1])
    intersection = np.clip(right - left, 0.0, None)
    union = (segment[1] - segment[0]) + (candidates[:, 1] - candidates[:, 0]) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (ActivityNet's `interpolated_prec_rec`) of a (N,) precision/recall curve."""
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # precision envelope, right to left
    changes = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[changes] - recall[changes - 1]) * precision[changes]))


def match_predictions(
    pred_videos: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    gt_videos: np.ndarray,
    gt_segments: np.ndarray,
    tious: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one class, vectorised over thresholds.

    pred_videos (N,) ints, pred_segments (N, 2), pred_scores (N,); gt_videos (M,), gt_segments (M, 2);
    tious (K,). Returns `order` (N,), the score-descending stable order of the predictions, and
    `matched_gt` (K, N): for the i-th prediction in that order, the index of the ground truth it matched
    at each threshold, or -1 (false positive).
    """
    order = np.argsort(-pred_scores, kind="stable")
    matched_gt = np.full((len(tious), len(order)), -1, dtype=np.int64)
    taken = np.zeros((len(tious), len(gt_videos)), dtype=bool)
    gt_of_video: dict[int, np.ndarray] = {}
    for video in np.unique(gt_videos):
        gt_of_video[int(video)] = np.flatnonzero(gt_videos == video)
    for rank, pred_index in enumerate(order):
        candidates = gt_of_video.get(int(pred_videos[pred_index]))
        if candidates is None:
            continue
        overlap = segment_tiou(pred_segments[pred_index], gt_segments[candidates])
        by_overlap = np.argsort(-overlap, kind="stable")
        candidates, overlap = candidates[by_overlap], overlap[by_overlap]
        # (K, m): candidate j is eligible at threshold k if free and overlapping enough
        eligible = (overlap[None, :] >= tious[:, None]) & ~taken[:, candidates]
        found = eligible.any(axis=1)
        first = eligible.argmax(axis=1)
        thresholds = np.flatnonzero(found)
        chosen = candidates[first[thresholds]]
        matched_gt[thresholds, rank] = chosen
        taken[thresholds, chosen] = True
    return order, matched_gt


def average_precision(true_positive: np.ndarray, false_positive: np.ndarray, num_positives: int) -> np.ndarray:
    """(K, N) bools in score order (a prediction may be neither: ignored) -> (K,) AP in [0, 1]."""
    if num_positives == 0:
        raise ValueError("AP is undefined without positives")
    tp = np.cumsum(true_positive, axis=1, dtype=np.float64)
    fp = np.cumsum(false_positive, axis=1, dtype=np.float64)
    counted = true_positive | false_positive
    result = np.zeros(true_positive.shape[0])
    for k in range(true_positive.shape[0]):
        keep = counted[k]  # ignored predictions add no point to the curve
        if not keep.any():
            continue
        recall = tp[k, keep] / num_positives
        precision = tp[k, keep] / (tp[k, keep] + fp[k, keep])
        result[k] = interpolated_ap(precision, recall)
    return result


# ----------------------------------------------------------------------------------------------- I/O


@dataclass
class _Segments:
    """Flat per-class arrays; video ids are indices into the split's video list."""

    videos: np.ndarray  # (N,) int64
    segments: np.ndarray  # (N, 2) float64 seconds
    scores: np.ndarray  # (N,) float64, zeros for ground truth


def _empty() -> _Segments:
    return _Segments(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))


def _segment(value: object, where: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise EvaluationError(f"{where}: 'segment' must be [start, end] in seconds, got {value!r}")
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError) as error:
        raise EvaluationError(f"{where}: 'segment' must hold numbers, got {value!r}") from error
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise EvaluationError(f"{where}: segment {value!r} must be finite with end >= start")
    return start, end


def _ground_truth(annotations: dict, split: str) -> tuple[list[str], dict[str, _Segments], set[str]]:
    database = annotations.get("database")
    if not isinstance(database, dict):
        raise EvaluationError("annotations have no 'database' dict (ActionFormer/ActivityNet format expected)")
    wanted = split.lower()
    videos = [vid for vid, info in database.items() if str(info.get("subset", "")).lower() == wanted]
    if not videos:
        subsets = sorted({str(info.get("subset")) for info in database.values()})
        raise EvaluationError(f"split {split!r} has no videos; subsets in the annotations: {subsets}")
    all_labels = {a["label"] for info in database.values() for a in info.get("annotations", [])}
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for index, video_id in enumerate(videos):
        for annotation in database[video_id].get("annotations", []):
            start, end = _segment(annotation.get("segment"), f"ground truth of video {video_id!r}")
            rows.setdefault(annotation["label"], []).append((index, start, end))
    per_class = {label: _to_segments(items, None) for label, items in rows.items()}
    return videos, per_class, all_labels


def _to_segments(items: list[tuple[int, float, float]], scores: list[float] | None) -> _Segments:
    array = np.asarray(items, dtype=np.float64).reshape(-1, 3)
    score_array = np.zeros(len(array)) if scores is None else np.asarray(scores, dtype=np.float64)
    return _Segments(array[:, 0].astype(np.int64), array[:, 1:3].copy(), score_array)


def _predictions(
    predictions: dict,
    video_index: dict[str, int],
    split_labels: set[str],
    all_labels: set[str],
    unknown_labels: str,
) -> tuple[dict[str, _Segments], int, dict[str, int]]:
    results = predictions.get("results") if isinstance(predictions, dict) else None
    if not isinstance(results, dict):
        raise EvaluationError("predictions have no 'results' dict (ActivityNet results format expected)")
    rows: dict[str, list[tuple[int, float, float]]] = {}
    scores: dict[str, list[float]] = {}
    ignored = {"video_not_in_split": 0, "label_not_in_split": 0, "unknown_label": 0}
    counted = 0
    for video_id, items in results.items():
        if not isinstance(items, list):
            raise EvaluationError(f"predictions of video {video_id!r} must be a list, got {type(items).__name__}")
        if video_id not in video_index:
            ignored["video_not_in_split"] += len(items)
            continue
        for item in items:
            where = f"prediction for video {video_id!r}"
            if not isinstance(item, dict) or not {"segment", "label", "score"} <= item.keys():
                raise EvaluationError(f"{where}: needs 'segment', 'label' and 'score', got {item!r}")
            label = str(item["label"])
            if label not in split_labels:
                if label not in all_labels:
                    if unknown_labels == "error":
                        raise EvaluationError(
                            f"{where}: label {label!r} is no class of the annotations "
                            f"(classes: {sorted(all_labels)}); pass unknown_labels='ignore' to skip such predictions"
                        )
                    ignored["unknown_label"] += 1
                else:
                    ignored["label_not_in_split"] += 1
                continue
            start, end = _segment(item["segment"], where)
            score = float(item["score"])
            if not math.isfinite(score):
                raise EvaluationError(f"{where}: score {item['score']!r} is not finite")
            rows.setdefault(label, []).append((video_index[video_id], start, end))
            scores.setdefault(label, []).append(score)
            counted += 1
    per_class = {label: _to_segments(items, scores[label]) for label, items in rows.items()}
    return per_class, counted, ignored


# ---------------------------------------------------------------------------------------------- main


def evaluate(
    annotations: dict,
    predictions: dict,
    split: str,
    tious: Sequence[float] = THUMOS_TIOUS,
    unknown_labels: Literal["error", "ignore"] = "error",
) -> dict:
    """mAP of ActivityNet-format `predictions` against the `split` of an ActionFormer annotation dict.

    Returns, in percent: `{"mAP": {"0.30": ..}, "average": .., "per_class": {label: avg AP},
    "short_actions": {"<=3s": avg mAP, "3-6s": avg mAP}}` and counts `num_videos`, `num_classes`,
    `num_ground_truth`, `num_predictions` (those evaluated), `num_ignored_predictions` (by reason).
    A short-action bin without ground truth reports None.
    """
    if unknown_labels not in ("error", "ignore"):
        raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {unknown_labels!r}")
    thresholds = np.asarray(list(tious), dtype=np.float64)
    if thresholds.size == 0 or np.any((thresholds <= 0) | (thresholds > 1)):
        raise ValueError(f"tious must be a non-empty list of values in (0, 1], got {list(tious)}")
    videos, ground_truth, all_labels = _ground_truth(annotations, split)
    video_index = {video_id: i for i, video_id in enumerate(videos)}
    preds, num_predictions, ignored = _predictions(
        predictions, video_index, set(ground_truth), all_labels, unknown_labels
    )

    labels = sorted(ground_truth)
    bins = {name: np.zeros((len(labels), len(thresholds))) for name in SHORT_ACTION_BINS}
    bin_present = {name: np.zeros(len(labels), dtype=bool) for name in SHORT_ACTION_BINS}
    ap = np.zeros((len(labels), len(thresholds)))
    for c, label in enumerate(labels):
        gt, pred = ground_truth[label], preds.get(label, _empty())
        _, matched = match_predictions(pred.videos, pred.segments, pred.scores, gt.videos, gt.segments, thresholds)
        is_match = matched >= 0
        ap[c] = average_precision(is_match, ~is_match, len(gt.videos))
        durations = gt.segments[:, 1] - gt.segments[:, 0]
        for name, (low, high) in SHORT_ACTION_BINS.items():
            in_bin = (durations > low) & (durations <= high)
            if not in_bin.any():
                continue
            bin_present[name][c] = True
            match_in_bin = is_match & in_bin[np.maximum(matched, 0)]
            bins[name][c] = average_precision(match_in_bin, ~is_match, int(in_bin.sum()))

    per_threshold = 100.0 * ap.mean(axis=0)
    short_actions = {
        name: (float(100.0 * bins[name][bin_present[name]].mean()) if bin_present[name].any() else None)
        for name in SHORT_ACTION_BINS
    }
    return {
        "mAP": {f"{t:.2f}": float(v) for t, v in zip(thresholds, per_threshold, strict=True)},
        "average": float(per_threshold.mean()),
        "per_class": {label: float(100.0 * ap[c].mean()) for c, label in enumerate(labels)},
        "short_actions": short_actions,
        "num_videos": len(videos),
        "num_classes": len(labels),
        "num_ground_truth": int(sum(len(g.videos) for g in ground_truth.values())),
        "num_predictions": num_predictions,
        "num_ignored_predictions": ignored,
    }


def boundary_errors(annotations: dict, predictions: dict, split: str, min_tiou: float = 0.5) -> np.ndarray:
    """Signed boundary errors of the detection matched to each ground truth of `split`.

    Returns (G, 2) float64 seconds, `[predicted start - true start, predicted end - true end]`, one row per
    ground truth in the order of the annotation file (videos of the split in database order, then their
    annotation lists); a row is NaN where nothing matches. The match of a ground truth is the highest-scoring
    prediction of the same video and label with tIoU >= `min_tiou` (ties: the first in list order). Matches
    are not one-to-one: a prediction may serve two ground truths that overlap heavily.
    """
    database = annotations.get("database")
    if not isinstance(database, dict):
        raise EvaluationError("annotations have no 'database' dict (ActionFormer/ActivityNet format expected)")
    results = predictions.get("results") if isinstance(predictions, dict) else None
    if not isinstance(results, dict):
        raise EvaluationError("predictions have no 'results' dict (ActivityNet results format expected)")
    rows = []
    for video_id, info in database.items():
        if str(info.get("subset", "")).lower() != split.lower():
            continue
        items = results.get(video_id, [])
        where = f"prediction for video {video_id!r}"
        labels = np.array([str(item["label"]) for item in items], dtype=object)
        segments = np.array([_segment(item["segment"], where) for item in items], dtype=np.float64).reshape(-1, 2)
        scores = np.array([float(item["score"]) for item in items], dtype=np.float64)
        for annotation in info.get("annotations", []):
            truth = np.array(_segment(annotation.get("segment"), f"ground truth of video {video_id!r}"))
            eligible = (labels == annotation["label"]) & (segment_tiou(truth, segments) >= min_tiou)
            if not eligible.any():
                rows.append((math.nan, math.nan))
                continue
            candidates = np.flatnonzero(eligible)
            best = candidates[np.argmax(scores[candidates])]  # argmax keeps the first of equal scores
            rows.append(tuple(segments[best] - truth))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def evaluate_files(
    annotations_path: str | Path,
    predictions_path: str | Path,
    split: str,
    tious: Sequence[float] = THUMOS_TIOUS,
    unknown_labels: Literal["error", "ignore"] = "error",
) -> dict:
    """`evaluate` on two JSON files; errors name the file that is missing or malformed."""
    return evaluate(_read_json(annotations_path), _read_json(predictions_path), split, tious, unknown_labels)


def parse_tious(text: str) -> tuple[float, ...]:
    """'0.3,0.4,0.5' or a range 'start:step:stop' (inclusive, like '0.3:0.1:0.7') -> thresholds."""
    text = text.strip()
    if ":" in text:
        start, step, stop = (float(part) for part in text.split(":"))
        count = int(round((stop - start) / step)) + 1
        return tuple(round(start + i * step, 6) for i in range(count))
    return tuple(float(part) for part in text.split(",") if part.strip())


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        with path.open() as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise EvaluationError(f"file not found: {path}") from error
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path} is not valid JSON: {error}") from error
