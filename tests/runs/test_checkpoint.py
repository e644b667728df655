import re

import pytest
import torch
from helpers import Exploit

from foldertune.errors import UserError
from foldertune.runs.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint


def test_checkpoints_are_plain_data_loadable_with_weights_only(chinese_run):
    run, _ = chinese_run
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(run / name, weights_only=True)
        assert checkpoint["format_version"] == FORMAT_VERSION
        assert set(checkpoint["versions"]) >= {"foldertune", "torch", "torchvision", "python"}
        assert checkpoint["config"]["model"]["backbone"] == "mobilenet_v2"
    assert load_checkpoint(run)["epoch"] == torch.load(run / "best.pt", weights_only=True)["epoch"]


def test_a_malicious_checkpoint_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "foldertune.checkpoint", "payload": Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_other_files_and_versions_get_a_clear_message(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a foldertune checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "foldertune.checkpoint", "format_version": 99, "versions": {"foldertune": "9.0"}},
               tmp_path / "future.pt")  # fmt: skip
    with pytest.raises(UserError, match=re.escape("format 99 (written by foldertune 9.0)")):
        load_checkpoint(tmp_path / "future.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(UserError, match="not a PyTorch file"):
        load_checkpoint(tmp_path / "text.pt")
    # text whose first byte is a pickle opcode ("{", "i") is not taken for pickled objects
    for name, text in (("json.pt", '{"a": 1}\n'), ("script.pt", "import os\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=f"'.*{name}' is not a PyTorch file"):
            load_checkpoint(tmp_path / name)


def test_a_torchscript_export_is_named_and_the_inputs_foldertune_reads_are_listed(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "model.torchscript.pt")
    with pytest.raises(UserError, match=r"is a TorchScript export, .*run folders, .*ONNX exports \(\.onnx\)"):
        load_checkpoint(tmp_path / "model.torchscript.pt")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format": "foldertune.checkpoint", "epoch": 1})
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled: torch.save fails midway
        save_checkpoint(path, {"format": "foldertune.checkpoint", "epoch": 2, "bad": lambda: None})
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_every_csv_the_run_folder_gets_ends_its_lines_with_a_newline_alone(chinese_run):
    run, _ = chinese_run
    tables = sorted(run.rglob("*.csv"))
    assert {path.name for path in tables} >= {"split.csv", "batches.csv", "epochs.csv", "predictions.csv"}
    for path in tables:
        assert b"\r\n" not in path.read_bytes(), path
