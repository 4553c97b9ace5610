"""train -> predict -> eval through the real `tzn` entry point, on a tiny model and six short videos."""

import json

import pytest
import torch

from model.checkpoint import load_checkpoint
from tzn import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_args(config, data, output, *extra):
    return ["train", "--config", config, "--annotations", str(data.annotations), "--features",
            str(data.features_dir), "--output", str(output), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data):
    """A two-epoch run, shared by the predict/eval tests (training is the slow part)."""
    import yaml

    from tests.training.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("run")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    assert main(train_args(str(config), tiny_data, root / "run")) == 0
    return root / "run"


def test_train_writes_a_loadable_checkpoint_log_and_resolved_config(trained_run, tiny_data):
    model, config = load_checkpoint(trained_run)
    assert config.labels == ["Dive", "Jump", "Run"] and config.model.input_dim == 16
    assert config.features.feat_stride == 4 and config.features.num_frames == 16
    assert config.metadata["postprocess"]["max_segments"] == 20
    log = [json.loads(line) for line in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert {"cls", "reg", "boundary", "budget", "mean_depth", "seconds"} <= log[0].keys()
    assert log[0]["mean_depth"] == 3.0  # epoch 1 is the full-depth warm-up
    assert (trained_run / "train_config.yaml").is_file()


def test_predict_writes_activitynet_results_and_stats(trained_run, tiny_data, tmp_path, capsys):
    predictions, stats = tmp_path / "pred.json", tmp_path / "stats.json"
    code, _, err = run(
        capsys, "predict", "--checkpoint", str(trained_run), "--annotations", str(tiny_data.annotations),
        "--features", str(tiny_data.features_dir), "--split", "test", "--output", str(predictions),
        "--stats", str(stats),
    )  # fmt: skip
    assert code == 0, err
    results = json.loads(predictions.read_text())["results"]
    assert len(results) == 3
    for detections in results.values():
        for detection in detections:
            start, end = detection["segment"]
            assert 0 <= start <= end and detection["label"] in {"Dive", "Jump", "Run"}
            assert 0 < detection["score"] <= 1
    totals = json.loads(stats.read_text())
    assert set(totals) == {"videos", "seconds", "mean_depth", "head_flops", "head_flops_uniform"}
    assert totals["videos"] == 3 and 1.0 <= totals["mean_depth"] <= 3.0 and totals["head_flops"] > 0


def test_soft_and_hard_atr_give_the_same_predictions(trained_run, tiny_data, tmp_path, capsys):
    outputs = {}
    for execution in ("soft", "hard"):
        path = tmp_path / f"{execution}.json"
        code, _, err = run(
            capsys, "predict", "--checkpoint", str(trained_run), "--annotations", str(tiny_data.annotations),
            "--features", str(tiny_data.features_dir), "--split", "test", "--output", str(path), "--atr", execution,
        )  # fmt: skip
        assert code == 0, err
        outputs[execution] = json.loads(path.read_text())["results"]
    assert outputs["soft"].keys() == outputs["hard"].keys()
    for video, soft in outputs["soft"].items():
        hard = outputs["hard"][video]
        assert [d["label"] for d in soft] == [d["label"] for d in hard]
        for a, b in zip(soft, hard, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["segment"] == pytest.approx(b["segment"], abs=1e-3)


def test_eval_prints_map_json(trained_run, tiny_data, tmp_path, capsys):
    predictions = tmp_path / "pred.json"
    assert main(["predict", "--checkpoint", str(trained_run), "--annotations", str(tiny_data.annotations),
                 "--features", str(tiny_data.features_dir), "--output", str(predictions)]) == 0  # fmt: skip
    capsys.readouterr()
    code, out, _ = run(
        capsys, "eval", "--annotations", str(tiny_data.annotations), "--predictions", str(predictions),
        "--split", "test", "--tious", "0.3,0.5",
    )  # fmt: skip
    assert code == 0
    metrics = json.loads(out)
    assert set(metrics["mAP"]) == {"0.30", "0.50"} and 0 <= metrics["average"] <= 100


def test_resume_continues_from_the_saved_epoch(tiny_data, tiny_config, tmp_path, capsys):
    config = tiny_config(optimizer={"epochs": 1})
    output = tmp_path / "run"
    assert main(train_args(config, tiny_data, output)) == 0
    capsys.readouterr()
    code, _, err = run(capsys, *train_args(config, tiny_data, output, "--epochs", "2"))
    assert code == 0
    assert "resuming" in err and "after epoch 1" in err
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert json.loads((output / "state" / "training_state.json").read_text())["epoch"] == 2


def test_resumed_run_equals_an_uninterrupted_one(tiny_data, tiny_config, tmp_path):
    config = tiny_config()
    assert main(train_args(config, tiny_data, tmp_path / "straight")) == 0
    assert main(train_args(config, tiny_data, tmp_path / "split", "--epochs", "1")) == 0
    assert main(train_args(config, tiny_data, tmp_path / "split", "--epochs", "2")) == 0
    straight = (tmp_path / "straight" / "model.safetensors").read_bytes()
    assert straight == (tmp_path / "split" / "model.safetensors").read_bytes()


def test_malformed_config_names_the_bad_key(tiny_data, tiny_config, tmp_path, capsys):
    config = tiny_config(optimizer={"learning_rate": 0.1})
    code, _, err = run(capsys, *train_args(config, tiny_data, tmp_path / "run"))
    assert code == 2
    assert "optimizer.learning_rate" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_model_section_rejects_data_derived_fields(tiny_data, tiny_config, tmp_path, capsys):
    code, _, err = run(capsys, *train_args(tiny_config(model={"input_dim": 16}), tiny_data, tmp_path / "run"))
    assert code == 2 and "model.input_dim" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--annotations", "/nowhere/a.json", "--predictions", "/nowhere/p.json"], "not found"),
        (["predict", "--checkpoint", "/nowhere/run", "--annotations", "a.json", "--features", "f", "--output", "p"],
         "does not exist"),
        (["train", "--config", "/nowhere/c.yaml", "--output", "/tmp/x"], "config file not found"),
    ],
)  # fmt: skip
def test_missing_files_exit_2_with_one_line(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_onnxruntime_predictions_equal_torch_predictions(trained_run, tiny_data, tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    assert run(capsys, "export", "onnx", "--checkpoint", str(trained_run), "--output", str(onnx))[0] == 0
    common = ["--checkpoint", str(trained_run), "--annotations", str(tiny_data.annotations),
              "--features", str(tiny_data.features_dir)]  # fmt: skip
    assert run(capsys, "predict", *common, "--output", str(tmp_path / "torch.json"))[0] == 0
    assert run(capsys, "predict", *common, "--output", str(tmp_path / "ort.json"),
               "--runtime", "onnxruntime", "--onnx", str(onnx))[0] == 0  # fmt: skip
    torch_results = json.loads((tmp_path / "torch.json").read_text())["results"]
    ort_results = json.loads((tmp_path / "ort.json").read_text())["results"]
    assert torch_results.keys() == ort_results.keys()
    for video, expected in torch_results.items():
        got = ort_results[video]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        for a, b in zip(got, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
            assert a["segment"] == pytest.approx(b["segment"], abs=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_and_predict_on_cuda(tiny_data, tiny_config, tmp_path):
    config = tiny_config(optimizer={"epochs": 1})
    assert main(train_args(config, tiny_data, tmp_path / "run", "--device", "cuda")) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "run"), "--annotations", str(tiny_data.annotations),
                 "--features", str(tiny_data.features_dir), "--output", str(tmp_path / "p.json"),
                 "--device", "cuda"]) == 0  # fmt: skip
