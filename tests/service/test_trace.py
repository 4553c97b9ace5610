"""`include=depth,boundary`: the per-position traces a timeline needs, downsampled, off by default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.localizer import Localizer
from engine.trace import downsample
from service.app import create_app
from service.errors import IncludeError
from service.settings import Settings
from service.trace import parse_include


def downsample_by_loop(values: np.ndarray, max_points: int) -> np.ndarray:
    """The brute-force twin: point i is the mean of positions [round(i T / n), round((i + 1) T / n))."""
    length = len(values)
    if length <= max_points:
        return values.astype(np.float64)
    points = []
    for i in range(max_points):
        start, stop = round(i * length / max_points), round((i + 1) * length / max_points)
        points.append(values[start:stop].mean(axis=0))
    return np.array(points)


@pytest.mark.parametrize(("length", "max_points"), [(10, 20), (20, 20), (21, 20), (4999, 2000), (6000, 7), (3, 1)])
def test_downsample_equals_bin_means_of_a_loop(length, max_points):
    values = np.random.default_rng(length).normal(size=(length, 2))
    assert np.allclose(downsample(values, max_points), downsample_by_loop(values, max_points))
    assert np.allclose(downsample(values[:, 0], max_points), downsample_by_loop(values[:, 0], max_points))


def test_downsample_keeps_the_mean_of_a_constant_and_at_most_max_points():
    assert np.array_equal(downsample(np.full(12345, 3.5), 2000), np.full(2000, 3.5))


def test_include_parses_comma_separated_names_and_refuses_others():
    assert parse_include(None) == frozenset()
    assert parse_include(" depth , boundary") == {"depth", "boundary"}
    with pytest.raises(IncludeError, match="choose from depth, boundary"):
        parse_include("depth,frames")


@pytest.fixture(scope="module")
def client(small_checkpoint, tmp_path_factory):
    settings = Settings(checkpoint=small_checkpoint, temp_dir=tmp_path_factory.mktemp("uploads"), device="cpu")
    with TestClient(create_app(settings, Localizer(settings.engine_settings()))) as client:
        yield client


def localize(client, path, **fields):
    with open(path, "rb") as file:
        return client.post("/localize", files={"video": (path.name, file)}, data=fields)


def test_depth_is_absent_unless_asked_for(client, media):
    body = localize(client, media / "clip.mp4").json()
    assert "depth" not in body and "boundary" not in body


def test_include_depth_returns_one_depth_per_position_within_the_video(client, media):
    body = localize(client, media / "clip.mp4", include="depth,boundary").json()
    depth, boundary = body["depth"], body["boundary"]
    assert depth["max_depth"] == 6
    assert len(depth["times_s"]) == len(depth["mean_depth"]) == len(boundary["d_start"]) > 5
    assert all(1.0 <= d <= 6.0 for d in depth["mean_depth"])
    assert depth["times_s"] == sorted(depth["times_s"]) and 0 <= depth["times_s"][0] < depth["times_s"][-1] <= 3.0
    # the answer's summary is the mean of the same per-position depths
    assert np.mean(depth["mean_depth"]) == pytest.approx(body["flops"]["mean_depth"], rel=1e-5)


@pytest.fixture(scope="module")
def unsnapped_client(small_checkpoint, tmp_path_factory):
    """The small checkpoint decoding as the shipped configs do: postprocess.snap off."""
    directory = tmp_path_factory.mktemp("checkpoint") / "unsnapped"
    shutil.copytree(small_checkpoint, directory)
    config = json.loads((directory / "config.json").read_text())
    config["postprocess"] = {**config.get("postprocess", {}), "snap": False}
    (directory / "config.json").write_text(json.dumps(config))
    settings = Settings(checkpoint=directory, temp_dir=tmp_path_factory.mktemp("uploads"), device="cpu")
    with TestClient(create_app(settings, Localizer(settings.engine_settings()))) as client:
        yield client


def test_the_boundary_head_runs_only_when_its_fields_are_asked_for(client, unsnapped_client, media):
    # snap off: the decoding does not use the fields, so they are computed only for include=boundary
    plain = localize(unsnapped_client, media / "clip.mp4").json()["flops"]
    fields = localize(unsnapped_client, media / "clip.mp4", include="boundary").json()["flops"]
    extra = fields["head"] - plain["head"]
    assert extra > 0
    # the uniform baseline is the uniform model computing the same outputs
    assert fields["head_uniform"] - plain["head_uniform"] == pytest.approx(extra)
    assert plain["mean_depth"] == pytest.approx(fields["mean_depth"])
    # snap on (the small checkpoint's default): the decoding needs the fields, the head runs either way
    snapped = localize(client, media / "clip.mp4").json()["flops"]
    assert snapped["head"] == pytest.approx(fields["head"])


def test_unknown_include_is_a_400_that_names_the_choices(client, media):
    response = localize(client, media / "clip.mp4", include="frames")
    assert response.status_code == 400
    assert "depth, boundary" in response.json()["error"]["message"]
