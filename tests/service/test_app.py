"""The FastAPI app through TestClient, with a real Localizer (real decord, real backbone, small TZN)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine.localizer import Localizer
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def uploads_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def settings(small_checkpoint, uploads_dir) -> Settings:
    return Settings(checkpoint=small_checkpoint, temp_dir=uploads_dir, max_upload_mb=16.0, max_duration_s=120)


@pytest.fixture(scope="module")
def localizer(settings) -> Localizer:
    return Localizer(settings.engine_settings())


@pytest.fixture(scope="module")
def client(settings, localizer):
    with TestClient(create_app(settings, localizer)) as client:
        yield client


def post_file(client, path: Path, field: str = "video", data: dict | None = None, headers: dict | None = None):
    with open(path, "rb") as file:
        return client.post("/localize", files={field: (path.name, file)}, data=data or {}, headers=headers or {})


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_localize_answers_with_every_documented_field(client, media):
    response = post_file(client, media / "clip.mp4", data={"min_score": "0", "top_k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["video"] == {
        "filename": "clip.mp4", "duration_s": pytest.approx(3.0, abs=0.05), "fps": pytest.approx(30.0),
        "frames": 90, "width": 320, "height": 240,
    }  # fmt: skip
    assert len(body["segments"]) == 3  # top_k with min_score 0
    for segment in body["segments"]:
        assert 0 <= segment["start_s"] <= segment["end_s"] <= 3.0
        assert segment["label"] in client.get("/info").json()["labels"]
    assert body["model"]["backbone"] == "resnet18-2d" and body["model"]["backbone_weights"] == "random-init"
    assert body["model"]["runtime"] == "torch" and body["model"]["device"] == "cpu"
    timing = body["timing_ms"]
    stages = ["upload", "queue", "decode", "features", "head", "postprocess"]
    assert list(timing) == [*stages, "total"] and min(timing.values()) >= 0
    assert timing["total"] == pytest.approx(sum(timing[stage] for stage in stages))
    flops = body["flops"]
    assert flops["backbone"] > 0 and flops["head"] > 0 and flops["total"] == flops["backbone"] + flops["head"]
    assert flops["head_saved_ratio"] == pytest.approx(1 - flops["head"] / flops["head_uniform"])
    assert 1.0 <= flops["mean_depth"] <= 6.0
    assert body["realtime_factor"] == pytest.approx(3.0 / (timing["total"] / 1000), rel=0.05)


def test_min_score_filters_segments(client, media):
    body = post_file(client, media / "clip.mp4", data={"min_score": "1.0"}).json()
    assert body["segments"] == []


def test_real_camera_footage_is_localized(client, camera_footage):
    response = post_file(client, camera_footage)
    assert response.status_code == 200, response.text
    assert response.json()["video"]["width"] == 768


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("empty.mp4", 422, "empty_video"),
        ("random.mp4", 415, "not_a_video"),
        ("still.png", 415, "not_a_video"),
        ("notes.txt", 415, "not_a_video"),
        ("tone.m4a", 415, "not_a_video"),
        ("truncated.mp4", 422, "undecodable_video"),
    ],
)
def test_bad_video_gets_its_code_and_the_service_stays_ready(client, media, uploads_dir, name, status, code):
    assert_error(post_file(client, media / name), status, code)
    assert client.get("/health/ready").status_code == 200
    assert list(uploads_dir.iterdir()) == []


def test_wrong_form_field_is_a_400_that_names_the_field(client, media):
    error = assert_error(post_file(client, media / "clip.mp4", field="file"), 400, "bad_form")
    assert "'file'" in error["message"]


def test_a_json_body_is_a_400(client):
    assert_error(client.post("/localize", json={"video": "clip.mp4"}), 400, "bad_form")


@pytest.mark.parametrize(
    "data", [{"min_score": "high"}, {"min_score": "2"}, {"top_k": "0"}, {"top_k": "1.5"}, {"top_k": str(10**27)}]
)
def test_bad_options_are_a_400(client, media, data):
    assert_error(post_file(client, media / "clip.mp4", data=data), 400, "bad_form")


def test_oversize_upload_is_a_413_and_leaves_no_file(client, tmp_path, uploads_dir):
    big = tmp_path / "big.mp4"
    with open(big, "wb") as file:  # sparse: 16 MiB + 1 byte without writing them
        file.truncate(16 * 1024 * 1024 + 1)
    assert_error(post_file(client, big), 413, "upload_too_large")
    assert list(uploads_dir.iterdir()) == []


def test_video_longer_than_the_limit_is_a_413(settings, media):
    short_limit = settings.model_copy(update={"max_duration_s": 1.0})
    with TestClient(create_app(short_limit, Localizer(short_limit.engine_settings()))) as client:
        assert_error(post_file(client, media / "clip.mp4"), 413, "video_too_long")


def test_api_key_is_required_when_set(settings, localizer, media):
    keyed = settings.model_copy(update={"api_key": SecretStr("s3cret")})
    with TestClient(create_app(keyed, localizer)) as client:
        assert_error(post_file(client, media / "clip.mp4"), 401, "unauthorized")
        assert_error(post_file(client, media / "clip.mp4", headers={"X-API-Key": "wrong"}), 401)
        assert post_file(client, media / "clip.mp4", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health/ready").status_code == 200  # health needs no key


def test_info_reports_model_runtime_and_limits(client, small_checkpoint):
    info = client.get("/info").json()
    assert info["model"]["name"] == "small" and len(info["model"]["checkpoint_sha256"]) == 64
    assert info["limits"]["max_upload_mb"] == 16.0 and info["limits"]["api_key_required"] is False
    assert info["ready"] is True


def test_ready_only_after_the_model_loaded(small_checkpoint):
    with TestClient(create_app(Settings(checkpoint=small_checkpoint))) as client:
        assert client.get("/health/live").status_code == 200
        deadline = time.monotonic() + 60
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "model did not become ready"
            time.sleep(0.2)
        assert client.get("/info").status_code == 200


def test_broken_checkpoint_keeps_ready_at_503_with_the_reason(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with TestClient(create_app(Settings(checkpoint=tmp_path))) as client:
        deadline = time.monotonic() + 30
        while True:
            response = client.get("/health/ready")
            if response.json()["error"]["code"] == "model_failed":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "invalid config" in response.json()["error"]["message"]
        assert_error(client.get("/info"), 503)


def counter(client, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in /metrics")


def test_metrics_count_requests_by_status(client, media):
    before = counter(client, 'tzn_requests_total{route="localize",status="415"}')
    post_file(client, media / "random.mp4")
    assert counter(client, 'tzn_requests_total{route="localize",status="415"}') == before + 1
    assert counter(client, "tzn_model_ready") == 1.0


def test_a_server_error_answers_a_plain_message_with_the_request_id_and_logs_the_details(
    settings, media, caplog
):  # fmt: skip
    broken = Localizer(settings.engine_settings())
    broken.extractor.backbone = torch.nn.Identity()  # a backbone that fails at run time (no frame_features)
    with TestClient(create_app(settings, broken), raise_server_exceptions=False) as client:
        error = assert_error(post_file(client, media / "clip.mp4"), 500, "internal_error")
        assert client.get("/health/ready").status_code == 200
    request_id = re.search(r"request_id ([0-9a-f]{32})", error["message"]).group(1)
    assert "AttributeError" not in error["message"] and "frame_features" not in error["message"]
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert logged and "frame_features" in str(logged[0].exc_info[1])


def test_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text and "https://" not in page.text
    for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text


def test_openapi_declares_the_retry_after_header_of_503(client):
    responses = client.get("/openapi.json").json()["paths"]["/localize"]["post"]["responses"]
    assert "Retry-After" in responses["503"]["headers"]
    assert "408" in responses and "413" in responses


def test_frame_indices_agree_with_the_frames_decoded(client):
    tree = Path("/usr/share/doc/opencv-doc/examples/data/tree.avi")
    if not tree.exists():
        pytest.skip("tree.avi not found: apt install opencv-doc")
    body = post_file(client, tree, data={"min_score": "0"}).json()
    frames = body["video"]["frames"]  # 68 frames over 29.6 s, though its header says 15 fps
    assert frames == 68 and body["segments"]
    for segment in body["segments"]:
        assert 0 <= segment["start_frame"] <= segment["end_frame"] < frames


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/nope"), 404, "not_found")


def test_processing_past_the_timeout_is_a_504_and_the_service_stays_ready(settings, camera_footage, uploads_dir):
    hurried = settings.model_copy(update={"request_timeout_s": 0.3})
    with TestClient(create_app(hurried, Localizer(hurried.engine_settings()))) as client:
        assert_error(post_file(client, camera_footage), 504, "timeout")
        assert client.get("/health/ready").status_code == 200
    deadline = time.monotonic() + 30  # the worker frees its upload when it ends
    while list(uploads_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(uploads_dir.iterdir()) == []


# ---------------------------------------------------------------------------------------------- a video as the body


def post_body(client, path: Path, query: str = "", content_type: str = "video/mp4", headers: dict | None = None):
    return client.post(
        f"/localize{query}", content=path.read_bytes(), headers={"Content-Type": content_type, **(headers or {})}
    )


def test_a_video_sent_as_the_body_is_answered_as_the_same_video_in_a_form(client, media):
    raw = post_body(client, media / "clip.mp4", "?min_score=0&top_k=5&filename=clip.mp4&include=depth")
    form = post_file(client, media / "clip.mp4", data={"min_score": "0", "top_k": "5", "include": "depth"})
    assert raw.status_code == form.status_code == 200, raw.text
    ours, theirs = raw.json(), form.json()
    assert ours["video"] == theirs["video"] and ours["segments"] == theirs["segments"]
    assert ours["depth"] == theirs["depth"] and ours["model"]["decoder"] == "decord"


def test_a_body_names_its_video_by_query_or_content_disposition(client, media):
    named = post_body(client, media / "clip.mp4", content_type="application/octet-stream",
                      headers={"Content-Disposition": 'attachment; filename="holiday.mp4"'})  # fmt: skip
    assert named.json()["video"]["filename"] == "holiday.mp4"
    assert post_body(client, media / "clip.mp4").json()["video"]["filename"] == "video"


def test_a_body_with_an_unknown_query_parameter_or_a_form_with_query_options_is_refused(client, media):
    error = assert_error(post_body(client, media / "clip.mp4", "?minscore=0.5"), 400, "bad_form")
    assert "'minscore'" in error["message"]
    with open(media / "clip.mp4", "rb") as file:
        form = client.post("/localize?min_score=0.5", files={"video": ("clip.mp4", file)})
    assert "form fields" in assert_error(form, 400, "bad_form")["message"]


def test_a_body_that_is_not_a_video_gets_the_errors_a_form_gets(client, media):
    assert_error(post_body(client, media / "still.png", content_type="video/mp4"), 415, "not_a_video")
    assert_error(post_body(client, media / "truncated.mp4"), 422, "undecodable_video")
    assert_error(post_body(client, media / "clip.mp4", content_type="text/plain"), 400, "bad_form")
    too_big = client.post("/localize", content=b"\x00" * (17 * 2**20), headers={"Content-Type": "video/mp4"})
    assert_error(too_big, 413, "upload_too_large")
    assert client.get("/health/ready").status_code == 200
