from helpers import read_csv, run_cli

import foldertune as ft


def test_compare_two_runs_writes_curves_and_table(chinese_run, tmp_path, mobilenet_weights):
    run, data = chinese_run
    linear = ft.train(data, mode="linear", epochs=1, img_size=64, batch_size=8, workers=0, quiet=True,
                      report=False, project=tmp_path)  # fmt: skip
    done = run_cli("compare", str(run), str(linear), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "cmp" / "compare.csv")
    assert [row["run"] for row in rows] == [run.name, linear.name]
    assert [row["mode"] for row in rows] == ["finetune", "linear"] and rows[0]["epochs"] == "2"
    assert all(0 <= float(row["best_val_acc"]) <= 1 and float(row["train_seconds"]) >= 0 for row in rows), rows
    assert float(rows[0]["train_seconds"]) > 0  # a linear epoch on cached features may round to 0.00 s
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 5000
    assert run.name in done.stdout and "best_val_acc" in done.stdout
    assert all(float(row["val_acc_low"]) <= float(row["best_val_acc"]) <= float(row["val_acc_high"]) for row in rows)
    [pair] = read_csv(tmp_path / "cmp" / "pairs.csv")  # the same seed split the same folder: the same val images
    assert (pair["test"], pair["images"]) == ("mcnemar", "6") and pair["verdict"] in done.stdout
    alone = run_cli("compare", str(run))
    assert alone.returncode == 2 and "at least two" in alone.stderr


def test_compare_refuses_a_run_without_a_finished_epoch(chinese_run, tmp_path):
    import shutil

    import pytest

    from foldertune.errors import UserError

    fresh = shutil.copytree(chinese_run[0], tmp_path / "fresh")
    (fresh / "epochs.csv").write_text((fresh / "epochs.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match="no finished epoch"):
        ft.compare([chinese_run[0], fresh], out=tmp_path / "cmp", log=lambda *_: None)


def test_a_run_compared_with_a_copy_of_itself_does_not_differ(chinese_run, tmp_path):
    import shutil

    run = chinese_run[0]
    twin = shutil.copytree(run, tmp_path / "twin")
    said = []
    ft.compare([run, twin], out=tmp_path / "cmp", log=said.append)
    [pair] = read_csv(tmp_path / "cmp" / "pairs.csv")
    assert (pair["test"], pair["a_only"], pair["b_only"], float(pair["p_value"])) == ("mcnemar", "0", "0", 1.0)
    assert "no difference beyond chance" in said[-2]


def test_one_run_as_a_string_or_a_run_given_twice_is_refused_in_one_sentence(chinese_run, tmp_path):
    import pytest

    from foldertune.errors import UserError

    run = chinese_run[0]
    with pytest.raises(UserError, match=r"at least two run folders with training logs; got 1\."):
        ft.compare(str(run), out=tmp_path / "one", log=lambda *_: None)  # a path, not a list of its letters
    with pytest.raises(UserError, match=r"is given twice \(also as .*\); pass each run once\."):
        ft.compare([run, run / "."], out=tmp_path / "twice", log=lambda *_: None)
    assert not (tmp_path / "one").exists() and not (tmp_path / "twice").exists()


def test_runs_that_learned_different_classes_are_not_ranked(chinese_run, tmp_path, mobilenet_weights):
    from helpers import copy_subset

    data = copy_subset(tmp_path / "data", 4, {"fishes": "fishes", "tools": "tools"})
    other = ft.train(data, mode="linear", epochs=1, img_size=64, batch_size=8, workers=0, quiet=True, report=False,
                     project=tmp_path)  # fmt: skip
    said = []
    ft.compare([chinese_run[0], other], out=tmp_path / "cmp", log=said.append)
    [pair] = read_csv(tmp_path / "cmp" / "pairs.csv")
    assert pair["test"] == "none" and "better" not in pair["verdict"]
    assert pair["verdict"].endswith("trained on different classes, so their accuracies measure different tasks: "
                                    "not compared") and pair["verdict"] in said  # fmt: skip
