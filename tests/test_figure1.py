"""`alexnet figure1` end to end on synthetic CIFAR-10 batches in the official format."""
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from alexnet import cli
from alexnet.experiments import epochs_to_target


def write_cifar(root, n=40, seed=0):
    """root/cifar-10-batches-py with 5 tiny training batches and a test batch."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.permutation(np.arange(n) % 10)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": b"synthetic", b"labels": [int(v) for v in labels],
                         b"data": data, b"filenames": [b"x.png"] * n}, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)],
                     b"num_cases_per_batch": n, b"num_vis": 3072}, f, protocol=2)
    return root


def test_figure1_quick_end_to_end_and_resume(tmp_path, capsys):
    data = write_cifar(tmp_path / "data")
    out = tmp_path / "out"
    args = ["figure1", "--data-dir", str(data), "--out", str(out), "--quick", "--no-download",
            "--no-progress"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "relu" in text and "tanh" in text
    with Image.open(out / "figure1.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    summary = json.loads((out / "figure1.json").read_text())
    assert set(summary["runs"]) == {"relu", "tanh"}
    for run in summary["runs"].values():
        assert run["epochs_run"] == 3 and len(run["train_error"]) == 3
        assert all(0 <= e <= 1 for e in run["train_error"])
    csv = (out / "figure1.csv").read_text().splitlines()
    assert csv[0] == "epoch,relu_train_error,tanh_train_error" and len(csv) == 4
    assert (out / "relu" / "checkpoint.npz").exists() and (out / "tanh" / "metrics.jsonl").exists()
    # running it again resumes the finished runs instead of training anew
    before = (out / "relu" / "checkpoint.npz").stat().st_mtime_ns
    assert cli.main(args) == 0
    assert json.loads((out / "figure1.json").read_text())["runs"]["relu"]["train_error"] == \
        summary["runs"]["relu"]["train_error"]
    assert (out / "relu" / "checkpoint.npz").stat().st_mtime_ns == before
    # --report-only re-plots from what the runs finished, training nothing
    (out / "figure1.png").unlink()
    assert cli.main(args + ["--report-only"]) == 0
    assert (out / "figure1.png").exists()
    assert (out / "relu" / "checkpoint.npz").stat().st_mtime_ns == before
    # another configuration in the same folder is refused, not mixed in, naming what differs
    capsys.readouterr()
    assert cli.main(args + ["--lr-relu", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "lr: 0.004 -> 0.5" in err and "other settings" in err


def test_figure1_without_data_says_where_to_put_it(tmp_path, capsys):
    assert cli.main(["figure1", "--data-dir", str(tmp_path / "nothing"), "--no-download",
                     "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "cifar-10-batches-py" in err


def test_epochs_to_target_interpolates():
    assert epochs_to_target([0.6, 0.4, 0.2], 0.25) == pytest.approx(2.75)
    assert epochs_to_target([0.2], 0.25) == 1.0
    assert epochs_to_target([0.6, 0.5], 0.25) is None


def test_ratio_when_tanh_stops_short_gives_a_bound_and_the_ratio_at_its_best_error():
    from alexnet.experiments import _ratio
    runs = {"relu": {"train_error": [0.6, 0.4, 0.3, 0.2], "epochs_to_target": 3.5, "epochs_run": 4},
            "tanh": {"train_error": [0.7, 0.5, 0.45, 0.4, 0.35, 0.3],
                     "epochs_to_target": None, "epochs_run": 6}}
    r = _ratio(runs, None)
    assert r["tanh_over_relu"] is None and r["at_least"] == pytest.approx(6 / 3.5)
    assert r["at_tanh_best"]["error"] == 0.3
    assert r["at_tanh_best"]["relu_epochs"] == 3.0 and r["at_tanh_best"]["tanh_epochs"] == 6.0
    assert r["at_tanh_best"]["tanh_over_relu"] == 2.0
    runs["tanh"]["epochs_to_target"] = 14.0
    assert _ratio(runs, None) == {"tanh_over_relu": 4.0}


def test_figure1_trains_the_nets_side_by_side_in_processes(tmp_path, capsys):
    """--jobs 2: each net in a process of its own; the same curves as one after the other."""
    data = write_cifar(tmp_path / "data")
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        assert cli.main(["figure1", "--data-dir", str(data), "--out", str(out), "--quick",
                         "--no-download", "--no-progress", "--jobs", jobs]) == 0
        runs[jobs] = json.loads((out / "figure1.json").read_text())["runs"]
        assert (out / "figure1.png").exists()
    assert set(runs["2"]) == {"relu", "tanh"}
    for act in ("relu", "tanh"):
        assert runs["2"][act]["epochs_run"] == runs["1"][act]["epochs_run"] == 3
        # one BLAS thread instead of all: rounding may differ, not the training
        np.testing.assert_allclose(runs["2"][act]["train_error"], runs["1"][act]["train_error"],
                                   atol=0.05)
    capsys.readouterr()


def test_figure1_in_processes_reports_a_run_error(tmp_path, capsys):
    data = write_cifar(tmp_path / "data")
    out = tmp_path / "out"
    args = ["figure1", "--data-dir", str(data), "--out", str(out), "--quick", "--no-download",
            "--no-progress", "--jobs", "2"]
    assert cli.main(args) == 0
    assert cli.main(args + ["--lr-tanh", "0.5"]) == 1       # the tanh run was made at another rate
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: 0.016 -> 0.5" in err


def test_core_share_gives_a_process_the_cores_of_the_nets_that_finished():
    from alexnet.runner import CoreShare as _CoreShare
    import minidl

    class Running:                     # stands in for the shared multiprocessing.Value
        value = 2

    class Batches:
        size = 7

        def __len__(self):
            return 3

        def epoch(self, epoch, start=0):
            for i in range(start, 3):
                yield i

    share = _CoreShare(Batches(), Running, cores=4)
    try:
        seen = []
        for i in share.epoch(0):
            seen.append(minidl.get_num_threads())
            Running.value = 1          # the other net reached its target
        assert seen == [2, 4, 4]
        assert len(share) == 3 and share.size == 7          # otherwise the batches it wraps
    finally:
        minidl.set_num_threads(None)


def test_training_plot_names_the_error_rates_in_words(tmp_path, monkeypatch):
    import matplotlib.figure
    from alexnet.figures import plot_training
    seen, save = [], matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        for ax in fig.axes:
            seen.append(ax.get_ylabel())
            seen.extend(t.get_text() for t in ax.get_legend().get_texts())
        return save(fig, *args, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot_training([{"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "train_top1": 0.5,
                    "val_top1": 0.6, "val_top5": 0.2}], tmp_path / "t.png")
    assert {"training top-1 error", "validation top-1 error", "validation top-5 error",
            "error rate (lower is better)", "training loss"} <= set(seen)
    assert not any("_top" in s for s in seen)


def test_one_vocabulary_with_the_old_spellings_kept():
    """figure1 and claims train in --processes; -j/--workers/--jobs, figure1's old names for
    it, still work; --epochs and --devices as train spells them, --max-epochs kept."""
    parser = cli.build_parser()
    for words in (["--processes", "2"], ["-j", "2"], ["--workers", "2"], ["--jobs", "2"]):
        assert parser.parse_args(["figure1", *words]).processes == 2
        assert parser.parse_args(["claims", *words]).processes == 2
    for words in (["--epochs", "7"], ["--max-epochs", "7"]):
        assert parser.parse_args(["figure1", *words]).max_epochs == 7
    for words in (["--device", "cuda:1"], ["--devices", "cuda:1"]):
        assert parser.parse_args(["figure1", *words]).device == "cuda:1"
    for words in (["-j", "3"], ["--workers", "3"], ["--jobs", "3"]):
        assert parser.parse_args(["prepare", "SRC", "OUT", *words]).workers == 3
    help_text = parser._subparsers._group_actions[0].choices["figure1"].format_help()
    assert "--processes" in help_text and "--workers" not in help_text
