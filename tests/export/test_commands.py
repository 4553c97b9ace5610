from model.exported import read_metadata
from tzn import main


def test_export_onnx_command_writes_a_file_with_metadata(checkpoint_dir, tmp_path, capsys):
    output = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--checkpoint", str(checkpoint_dir), "--output", str(output)]) == 0
    assert read_metadata(output).checkpoint.labels[0] == "BaseballPitch"
    assert str(output) in capsys.readouterr().out


def test_export_onnx_command_names_a_missing_checkpoint(tmp_path, capsys):
    code = main(["export", "onnx", "--checkpoint", str(tmp_path / "nope"), "--output", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
