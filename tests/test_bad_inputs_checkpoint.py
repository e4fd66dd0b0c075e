"""Checkpoints and scores that cannot be trusted: overwritten, edited, half-written,
pickled, or full of NaN. Each gives a clear error (or is cleaned up), never a
traceback, a lost checkpoint or a silently wrong number."""
import fcntl
import json

import numpy as np
import pytest

from minidl import serialize
from alexnet import cli
from alexnet.evaluate import NonFiniteScores, check_finite, evaluate, topk_errors
from alexnet.imagenet_train import cache_differences, load_checkpoint, resume_differences
from alexnet.data.arrays import ArrayBatches
from alexnet.model import CifarNet, CifarNetConfig
from alexnet.train import TrainConfig, Trainer, TrainingDiverged
from minidl import optim


def test_evaluate_json_never_overwrites_an_input(tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoint.npz"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text('{"splits": {}}')
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    for target, said in ((ckpt, "which this command reads"),
                         (cache / "manifest.json", "which this command reads"),
                         (tmp_path / "notes.txt", "is not a result of `alexnet evaluate`"),
                         (tmp_path / "notes.json", "is not a result of `alexnet evaluate`"),
                         (tmp_path, "is a folder")):
        assert cli.main(["evaluate", str(ckpt.parent), "--data-dir", str(cache),
                         "--json", str(target)]) == 1
        err = capsys.readouterr().err
        assert "--json" in err and said in err and "Traceback" not in err, (target, err)
    assert cli.main(["evaluate", str(ckpt), "--data-dir", str(cache), "--json",
                     str(ckpt)]) == 1
    assert "which this command reads" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"weights" and (tmp_path / "notes.txt").read_text() == "mine"
    assert (cache / "manifest.json").read_text() == '{"splits": {}}'
    assert json.loads((tmp_path / "notes.json").read_text()) == {"mine": 1}
    # a new file in an input folder is no input: refused only later, for the fake
    # checkpoint (not for --json)
    for target in (ckpt.parent / "val.json", cache / "result.json"):
        assert cli.main(["evaluate", str(ckpt.parent), "--data-dir", str(cache),
                         "--json", str(target)]) == 1
        assert "--json" not in capsys.readouterr().err


def test_a_pickled_file_is_refused_without_suggesting_pickle(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError) as e:
        serialize.load(path)
    msg = str(e.value)
    assert "pickled Python objects" in msg and "pickle.load" not in msg
    assert "allow_pickle" not in msg


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    target = tmp_path / "checkpoint.npz"
    stale = tmp_path / ".checkpoint.npz.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)                          # a save killed mid-write
    other = tmp_path / ".other.npz.abc123.tmp"
    other.write_bytes(b"x")                                  # another target's: not ours
    live = tmp_path / ".checkpoint.npz.live.tmp"
    live.write_bytes(b"x")
    with open(live, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)               # a save still writing
        serialize.save(target, {"w": np.ones(3)})
        assert not stale.exists() and live.exists() and other.exists()
    stale.write_bytes(b"x")
    serialize.load(target)                                   # loading cleans up too
    assert not stale.exists() and not live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.abc123.tmp",
                                                          "checkpoint.npz"]


def _tiny_trainer(out, lr=0.01, epochs=1):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 16)
    model = CifarNet(CifarNetConfig(), seed=0)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches = ArrayBatches(x, y, np.zeros((3, 32, 32), np.float32), 8, seed=0)
    return Trainer(model, opt, batches, out, TrainConfig(max_epochs=epochs, progress=False,
                                                         topk=(1,)))


@pytest.mark.parametrize("edit,entry", [
    (lambda s: s["train"].update(epoch="three"), "train/epoch"),
    (lambda s: s.pop("optimizer"), "'optimizer' is missing"),
    (lambda s: s["optimizer"].update(velocity=[]), "cannot restore the run"),
    (lambda s: s["train"].update(surprise=1), "cannot restore the run"),
])
def test_an_edited_checkpoint_names_the_entry(tmp_path, edit, entry):
    trainer = _tiny_trainer(tmp_path)
    trainer.fit()
    state = serialize.load(trainer.checkpoint_path)
    edit(state)
    serialize.save(trainer.checkpoint_path, state)
    with pytest.raises(ValueError, match=entry):
        _tiny_trainer(tmp_path).resume()


def test_an_edited_imagenet_checkpoint_is_a_clear_cli_error(tmp_path, capsys):
    path = tmp_path / "checkpoint.npz"
    serialize.save(path, {"meta": {"kind": "alexnet-imagenet", "model": {"colour": "x"},
                                   "recipe": {}, "data": {}, "mean": np.zeros(3),
                                   "wnids": [], "devices": ["cpu"]},
                          "model": {}, "train": {"epoch": 1}})
    with pytest.raises(ValueError, match="cannot build the net it describes"):
        load_checkpoint(path)
    serialize.save(path, {"meta": {"kind": "alexnet-imagenet"}, "model": {}})
    assert cli.main(["evaluate", str(tmp_path), "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "'meta/model' is missing" in err and "Traceback" not in err


def test_nan_scores_are_an_error_not_zero_error():
    scores = np.array([[0.1, 0.9], [np.nan, 0.2]])
    with pytest.raises(NonFiniteScores, match="1 of 2 images"):
        check_finite(scores)
    with pytest.raises(NonFiniteScores):
        check_finite(np.array([[np.inf, 0.0]]))
    assert topk_errors(scores, np.array([1, 0])) == {1: 1, 5: 1}   # a NaN row is never right
    model = CifarNet(CifarNetConfig(), seed=0)
    for p in model.parameters():
        p.data[...] = np.nan                                   # a diverged net
    x = np.zeros((4, 3, 32, 32), np.float32)
    with pytest.raises(NonFiniteScores, match="diverged"):
        evaluate(model, [(x, np.zeros(4, np.int64))])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_says_how_to_resume_with_a_lower_rate(tmp_path):
    trainer = _tiny_trainer(tmp_path, lr=1e6, epochs=5)
    with pytest.raises(TrainingDiverged, match="--resume --lr 100000") as e:
        trainer.fit()
    assert "learning rate, epochs and logging options may change on resume" in str(e.value)


def test_resume_compares_only_what_is_given_and_the_cache():
    saved = {"model": {"num_classes": 4, "input_size": 67, "conv_channels": [8, 12, 16, 12, 8]},
             "recipe": {"lr": 0.01, "epochs": 90, "batch_size": 8, "seed": 0}}
    given = {"recipe": {"lr": 0.001, "epochs": 120, "batch_size": 64, "seed": 0},
             "model": {"conv_channels": (8, 12, 16, 12, 8), "input_size": 227}}
    assert resume_differences(saved, given) == ["recipe.batch_size: 8 -> 64",
                                                "model.input_size: 67 -> 227"]
    assert resume_differences(saved, {}) == []           # nothing given: the saved settings
    old = {"size": 76, "train": "abc"}                   # a checkpoint of an older version
    now = {"size": 76, "train": "abd", "arrays": {"train_images": "1234"}}
    assert cache_differences(old, now) == ["data.train: 'abc' -> 'abd'"]
    assert cache_differences(now, {**now, "arrays": {"train_images": "5678"}}) == [
        "train_images: other contents (its shape, dtype or checksums differ)"]


def test_an_edited_figure1_checkpoint_is_a_clear_cli_error(tmp_path, capsys):
    run = tmp_path / "out" / "relu"
    run.mkdir(parents=True)
    serialize.save(run / "checkpoint.npz", {"meta": {"activation": "relu"}})   # lr deleted
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_top1": 0.5, "seconds": 1.0, '
                                       '"images_per_s": 10.0}\n')
    assert cli.main(["figure1", "--report-only", "--activations", "relu", "-o",
                     str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "'meta/lr' is missing" in err and "Traceback" not in err
