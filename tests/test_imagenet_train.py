"""ImageNet end to end on a synthetic ImageFolder: prepare -> train (the real CLI and
recipe, a small net) -> evaluate (centre and 10 patches) -> Figures 3 and 4; the
SIGKILL-and-resume test through the recipe; a cache with other classes refused."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl import Tensor, nn
from alexnet import cli
from alexnet.evaluate import evaluate_ten
from alexnet.figures_imagenet import kernel_grid, nearest
from alexnet.imagenet_train import load_checkpoint
from alexnet.train import read_metrics
from conftest import session_processes

SCRIPT = Path(__file__).with_name("_imagenet_train_script.py")
WNIDS = ["n01000001", "n02000002", "n03000003", "n04000004"]
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
# A small two-column net: 67x67 patches of a 76x76 cache give 15 -> 7 -> 3 -> 1 after
# conv1/pool1/pool2/pool5. std 0.1: at fan-ins of a few dozen, 0.01 fades to nothing.
SMALL = ["--input-size", "67", "--conv-channels", "8,12,16,12,8", "--fc-features", "64",
         "--weight-std", "0.1", "--no-progress"]


def image_folder(root, wnids=WNIDS, train=12, val=3, seed=0):
    """train/ and val/ in WNID folders: class k is a noisy picture of colour k."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for k, w in enumerate(wnids):
            d = root / split / w
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, wd = (int(v) for v in rng.integers(80, 120, 2))
                a = np.clip(COLOURS[k % 4] + rng.normal(0, 40, (h, wd, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{w}_{i}.JPEG", quality=85)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    image_folder(root / "src")
    assert cli.main(["prepare", str(root / "src"), str(root / "cache"), "--size", "76",
                     "--workers", "0", "--no-progress"]) == 0
    return root / "cache"


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    """A run of the recipe through the CLI: 10 epochs of 6 batches of 8."""
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--data", str(cache), "--out", str(out), "--batch", "8",
                     "--epochs", "10", "--schedule", "2012", "--workers", "1", *SMALL]) == 0
    return out


def test_training_through_the_cli_drives_the_training_error_down(trained):
    history = read_metrics(trained)
    assert [r["epoch"] for r in history] == list(range(1, 11))
    assert history[0]["train_top1"] > 0.5                      # 4 classes: chance is 0.75
    # well below chance; across seeds the best of the last 3 epochs lies in 0.06-0.29
    assert min(r["train_top1"] for r in history[-3:]) < 0.35
    assert {"val_top1", "val_top5", "val_loss", "lr"} <= set(history[-1])
    assert (trained / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((trained / "run.json").read_text())
    assert run["model"]["conv_channels"] == [8, 12, 16, 12, 8] and run["data"]["classes"] == 4


def test_a_run_in_use_is_not_overwritten_and_resume_checks_the_recipe(trained, cache, capsys,
                                                                      tmp_path):
    args = ["train", "--data", str(cache), "--out", str(trained), *SMALL]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "to continue it, type:\n  alexnet " + " ".join(args) + " --resume\n" in err
    assert cli.main(["train", "--data", str(cache), "--out", str(trained), "--resume",
                     "--batch", "4", *SMALL]) == 1
    err = capsys.readouterr().err
    assert "identical run" in err and "recipe.batch_size: 8 -> 4" in err
    assert "the learning rate (--lr), --epochs and logging options" in err
    # the learning rate and the epochs may change: --resume RUN continues with them
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    assert cli.main(["train", "--data-dir", str(cache), "-b", "8", "--resume", str(copy),
                     "--lr", "0.0005", "--epochs", "11", "--schedule", "2012", "-j", "0",
                     *SMALL]) == 0
    history = read_metrics(copy)
    assert len(history) == 11 and history[-1]["lr"] == pytest.approx(0.0005)


def test_resume_takes_the_settings_from_the_checkpoint(trained, tmp_path, capsys):
    """`--resume RUN` alone continues a run of non-default settings (the cache, the small
    net, the batch, the schedule: all saved); only what is given is compared."""
    import shutil
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    assert cli.main(["train", "--resume", str(run), "--epochs", "11", "-j", "0",
                     "--no-progress"]) == 0
    history = read_metrics(run)
    assert len(history) == 11 and history[-1]["step"] == 11 * 6      # batch 8, as saved
    saved = json.loads((run / "run.json").read_text())
    assert saved["recipe"]["batch_size"] == 8 and saved["recipe"]["schedule"] == "2012"
    assert saved["model"]["input_size"] == 67
    assert cli.main(["train", "--resume", str(run), "--epochs", "12", "--input-size", "59",
                     "--schedule", "plateau", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "model.input_size: 67 -> 59" in err and "recipe.schedule: '2012' -> 'plateau'" in err
    assert "come from the checkpoint" in err


def _edited_run(trained, tmp_path, edit):
    import shutil
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    state = minidl.serialize.load(run / "checkpoint.npz")
    edit(state)
    minidl.serialize.save(run / "checkpoint.npz", state)
    return run


EDITS = {
    "lr -0.01 in the recipe": (lambda s: s["meta"]["recipe"].update(lr=-0.01),
                               "meta/recipe/lr: expected a positive finite number, found -0.01"),
    "momentum 2.0 in the recipe": (lambda s: s["meta"]["recipe"].update(momentum=2.0),
                                   "meta/recipe/momentum: expected a number in [0, 1), found 2.0"),
    "lr -0.01 in the optimizer": (lambda s: s["optimizer"].update(lr=-0.01),
                                  "expected lr > 0, 0 <= momentum < 1"),
    "momentum 2.0 in the optimizer": (lambda s: s["optimizer"].update(momentum=2.0),
                                      "found lr=0.01, momentum=2.0"),
    "a negative base rate in the schedule": (lambda s: s["schedule"].update(base_lr=-1.0),
                                             "StepSchedule.load_state_dict"),
    "a history of [1, 'two', None]": (lambda s: s["train"].update(history=[1, "two", None]),
                                      "train/history should hold one record per finished "
                                      "epoch (10), found 3"),
    "a history record of strings": (
        lambda s: s["train"]["history"][2].update(train_loss="two"),
        "train/history/2 should be the record of epoch 3"),
    "epoch -1": (lambda s: s["train"].update(epoch=-1),
                 "train/epoch should be a whole number >= 0, found -1"),
    "conv_channels (8, 12)": (lambda s: s["meta"]["model"].update(conv_channels=[8, 12]),
                              "conv_channels: expected five whole numbers >= 1"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_checkpoint_does_not_resume(edit, trained, tmp_path, capsys):
    """One validation of settings for the command line and for checkpoints: values the
    command line refuses are refused in a checkpoint, with the file named."""
    change, expected = EDITS[edit]
    run = _edited_run(trained, tmp_path, change)
    assert cli.main(["train", "--resume", str(run), "--epochs", "11", "-j", "0",
                     "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert expected in err and str(run / "checkpoint.npz") in err, err
    assert "Traceback" not in err
    assert len(read_metrics(run)) == 10                     # nothing was trained


def test_a_checkpoint_mean_of_another_shape_is_named(trained, tmp_path, capsys):
    run = _edited_run(trained, tmp_path, lambda s: s["meta"].update(mean=s["meta"]["mean"][..., 0]))
    assert cli.main(["evaluate", str(run), "--data-dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "meta/mean should be the mean image (S, S, 3)" in err and "(76, 76)" in err
    assert "axes don't match" not in err and "Traceback" not in err


def test_checkpoint_rebuilds_the_model_alone(trained):
    model, meta = load_checkpoint(trained)
    assert model.cfg.conv_channels == (8, 12, 16, 12, 8) and model.cfg.num_classes == 4
    assert meta["mean"].shape == (76, 76, 3) and meta["wnids"] == WNIDS
    assert meta["epochs_trained"] == 10 and not model.training


def test_evaluate_centre_and_ten_patches(trained, cache, tmp_path, capsys):
    out = trained / "val.json"           # docs/howto_imagenet.md's form: a new file in the run
    assert cli.main(["evaluate", str(trained), "--data", str(cache), "--workers", "0",
                     "--batch", "20", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "centre patch" in text and "10-patch average" in text
    r = json.loads(out.read_text())
    assert r["centre"]["n"] == r["ten"]["n"] == 12 and r["epochs_trained"] == 10
    for key in ("centre", "ten"):
        assert 0 <= r[key]["top1"] <= 1 and r[key]["top5"] == 0.0   # 4 classes: top-5 is free
    assert cli.main(["evaluate", str(trained / "checkpoint.npz"), "--data", str(cache),
                     "--workers", "1", "--patches", "1", "--no-progress", "--json", str(out)]) == 0
    centre_only = json.loads(out.read_text())
    assert set(centre_only) >= {"centre"} and "ten" not in centre_only
    assert centre_only["centre"]["top1"] == pytest.approx(r["centre"]["top1"])


class Scores(nn.Module):
    """Logits read straight from pixel (0, 0) of each of 3 channels."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(np.zeros(1))

    def forward(self, x):
        return Tensor(x.data[:, :, 0, 0], device=x.device)


def test_ten_patch_average_against_the_centre_patch_on_known_predictions():
    x = np.zeros((2, 10, 3, 1, 1), np.float32)
    # image 0 (label 2): the centre patch (index 4) says class 0; the other nine say 2
    x[0, :, 2] = 3.0
    x[0, 4] = np.array([5.0, 0.0, 0.0])[:, None, None]
    # image 1 (label 1): the centre says 1 weakly; six patches say 0, three say 1
    x[1, :6, 0] = 2.0
    x[1, 6:, 1] = 2.0
    x[1, 4] = np.array([0.0, 0.5, 0.0])[:, None, None]
    r = evaluate_ten(Scores(), [(x, np.array([2, 1]))], device="cpu", ks=(1, 2))
    assert r["centre"]["top1"] == 0.5 and r["ten"]["top1"] == 0.5
    p = np.exp(x[..., 0, 0]) / np.exp(x[..., 0, 0]).sum(-1, keepdims=True)
    assert r["ten"]["loss"] == pytest.approx(-(np.log(p[0].mean(0)[2]) + np.log(p[1].mean(0)[1])) / 2, rel=1e-5)
    assert r["centre"]["loss"] == pytest.approx(-(np.log(p[0, 4, 2]) + np.log(p[1, 4, 1])) / 2, rel=1e-5)
    assert r["ten"]["top2"] == 0.0 and r["centre"]["n"] == 2
    with pytest.raises(ValueError, match=r"\(N, 10, 3, S, S\)"):
        evaluate_ten(Scores(), [(x[:, 0], np.array([2, 1]))], device="cpu")


def test_figures_are_pngs(trained, cache, tmp_path):
    assert cli.main(["figures", str(trained), "--data", str(cache), "--out", str(tmp_path),
                     "--images", "3", "--neighbours", "4", "--max-train", "20",
                     "--no-progress"]) == 0
    for name in ("figure3.png", "figure4.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        with Image.open(tmp_path / name) as img:
            assert min(img.size) > 100


def test_class_names_come_from_the_cache_the_devkit_or_the_shipped_list(tmp_path):
    import shutil
    from alexnet.figures_imagenet import class_words, shipped_synset_words
    table = shipped_synset_words()
    assert len(table) == 1000 and table["n01440764"] == "tench, Tinca tinca"
    assert sorted(table) == list(table)                  # class k is the k-th sorted WNID
    assert class_words(["n01440764", "n09999999"]) == ["tench, Tinca tinca", "n09999999"]
    assert class_words(["n01440764"], ["my fish"]) == ["my fish"]
    kit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    kit.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "data" / "ilsvrc2012_meta_tiny.mat", kit / "meta.mat")
    names = class_words(WNIDS, devkit=kit.parent)
    assert all(names) and names != WNIDS


def test_kernel_grid_and_nearest_neighbours():
    k = np.random.default_rng(0).normal(size=(48, 3, 11, 11))
    g = kernel_grid(k, ncols=12)
    assert g.shape == (4 * 12 + 1, 12 * 12 + 1, 3) and g.min() == 0.0 and g.max() == 1.0
    np.testing.assert_allclose(g[1:12, 1:12].min(), 0.0)        # every kernel on its own scale
    np.testing.assert_allclose(g[1:12, 1:12].max(), 1.0)
    keys = np.array([[0.0, 0], [10, 0], [0, 3], [1, 1]])
    assert nearest(np.array([[0.0, 0.5], [9, 0]]), keys, 2).tolist() == [[0, 3], [1, 3]]


def test_evaluate_and_figures_refuse_a_cache_with_other_classes(trained, tmp_path, capsys):
    other = ["n01000001", "n02000002", "n03000003", "n05000005"]
    image_folder(tmp_path / "src", other, train=2, val=1)
    assert cli.main(["prepare", str(tmp_path / "src"), str(tmp_path / "cache"), "--size", "76",
                     "--workers", "0", "--no-progress"]) == 0
    for command in ("evaluate", "figures"):
        assert cli.main([command, str(trained), "--data", str(tmp_path / "cache"),
                         "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "trained on 4 classes" in err and "n05000005" in err and "differ" in err


def run_script(cache, out, *extra, kill_at=()):
    pre = ["--kill-at", *map(str, kill_at)] if kill_at else []
    env = dict(os.environ, PYTHONHASHSEED="0")
    args = ["--data", str(cache), "--out", str(out), "--batch", "8", "--epochs", "2",
            "--workers", "2", "--checkpoint-steps", "1", *SMALL, "--fc-features", "16", *extra]
    return subprocess.run([sys.executable, str(SCRIPT), *pre, "--", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(cache, tmp_path):
    straight = run_script(cache, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    killed = run_script(cache, tmp_path / "killed", kill_at=(1, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = minidl.serialize.load(tmp_path / "killed" / "checkpoint.npz")
    assert (state["train"]["epoch"], state["train"]["batch"]) == (1, 2)   # mid-epoch
    resumed = run_script(cache, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = minidl.serialize.load(tmp_path / "straight" / "checkpoint.npz")
    b = minidl.serialize.load(tmp_path / "killed" / "checkpoint.npz")
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)   # bit for bit
    for va, vb in zip(a["optimizer"]["velocity"], b["optimizer"]["velocity"]):
        np.testing.assert_array_equal(va, vb)
    assert a["rng"] == b["rng"] and a["train"]["step"] == b["train"]["step"] == 12

    def untimed(records):
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records]
    assert untimed(read_metrics(tmp_path / "straight")) == untimed(read_metrics(tmp_path / "killed"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_training_saves_a_checkpoint_and_leaves_no_process(
        cache, tmp_path, signum):
    """Ctrl-C and SIGTERM, sent to every process of the job (as a terminal and Slurm or
    systemd send them: the loader workers get it too), end alike: a checkpoint where
    the state is whole (checkpoints are otherwise only written at the end of an epoch
    here), the exit status of that signal, a resume command that works, no process left."""
    out = tmp_path / "run"
    args = ["--data", str(cache), "--out", str(out), "--batch", "4", "--epochs", "50",
            "--workers", "2", *SMALL]
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for _ in range(1200):                      # until the first epoch is checkpointed
            if (out / "checkpoint.npz").exists():
                break
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert f"interrupted by {name}; a checkpoint was saved: {out / 'checkpoint.npz'}" in err
    assert "Traceback" not in err and "leaked" not in err
    assert err.strip().splitlines()[-1].endswith(" ".join(args) + " --resume")   # what to type
    train = minidl.serialize.load(out / "checkpoint.npz")["train"]
    said = err.split("checkpoint.npz (")[1].split(")")[0]
    assert said == (f"after epoch {train['epoch']}" if train["batch"] == 0 else
                    f"epoch {train['epoch'] + 1}, after batch {train['batch']} of 12")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and session_processes(proc.pid):
        time.sleep(0.1)
    assert session_processes(proc.pid) == []      # loader workers and forkserver gone
    more = [*args[:args.index("--epochs")], "--epochs", str(train["epoch"] + 1),
            *args[args.index("--epochs") + 2:], "--resume"]
    assert cli.main(["train", *more]) == 0
    assert minidl.serialize.load(out / "checkpoint.npz")["train"]["step"] == \
        12 * (train["epoch"] + 1)


def test_a_run_folder_in_use_is_refused_naming_the_process_that_trains_there(cache, tmp_path,
                                                                             capsys):
    from test_train import hold_lock
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        assert cli.main(["train", "--data", str(cache), "--out", str(out), *SMALL]) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"{out} is in use: another process trains there (pid {holder.pid}" in err
    assert f"kill -INT {holder.pid}" in err and "Traceback" not in err
    assert not (out / "run.json").exists() and not (out / "checkpoint.npz").exists()


def test_gpu_pipeline_check_dry_run_on_a_virtual_device():
    from benchmarks.gpu_pipeline import pipeline_check
    rows = pipeline_check("cpu:1", 1, batch=2, images=8, workers=1, warmup=1)
    assert [r["stage"].split()[0] for r in rows] == ["loader", "train", "end"]
    end = rows[-1]
    assert end["ok"] and end["images_per_s"] > 0 and 0 <= end["wait_fraction"] < 1
