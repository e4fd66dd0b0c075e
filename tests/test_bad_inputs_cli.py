"""The command line given bad values, interrupted, or used the way other training
scripts are: every bad value is refused before any work with a message naming the
option; Ctrl-C ends every process within seconds with exit code 130."""
import os
import signal
import subprocess
import sys
import time

import pytest

from alexnet import __version__, cli
from alexnet.data.loader import Loader
from conftest import session_processes
from test_figure1 import write_cifar

REFUSED = [
    (["train", "--data-dir", "c", "--lr", "nan"], "--lr", "a positive finite number"),
    (["train", "--data-dir", "c", "--lr", "-0.1"], "--lr", "a positive finite number"),
    (["train", "--data-dir", "c", "--lr", "inf"], "--lr", "a positive finite number"),
    (["train", "--data-dir", "c", "--devices", "cpu:0,cpu:0"], "--devices", "a device twice"),
    (["train", "--data-dir", "c", "--devices", "gpu"], "--devices", "like cpu, cpu:1"),
    (["train", "--data-dir", "c", "--checkpoint-steps", "-1"], "--checkpoint-steps", ">= 0"),
    (["train", "--data-dir", "c", "--checkpoint-minutes", "0"], "--checkpoint-minutes",
     "positive"),
    (["train", "--data-dir", "c", "--workers", "-1"], "--workers", ">= 0"),
    (["train", "--data-dir", "c", "--conv-channels", "0,12,16,12,8"], "--conv-channels", ">= 1"),
    (["train", "--data-dir", "c", "--conv-channels", "8,12"], "--conv-channels",
     "expected five whole numbers >= 1, the kernels of conv1..conv5, e.g. 8,12,16,12,8, "
     "found '8,12'"),
    (["train", "--data-dir", "c", "--conv-channels", "8,x,16,12,8"], "--conv-channels",
     "five whole numbers"),
    (["train", "--data-dir", "c", "--seed", "-1"], "--seed", ">= 0"),
    (["prepare", "--verify"], "--verify", "expected one argument"),
    (["train", "--data-dir", "c", "--batch-size", "0"], "--batch-size", ">= 1"),
    (["train", "--data-dir", "c", "--epochs", "0"], "--epochs", ">= 1"),
    (["train", "--data-dir", "c", "--weight-std", "nan"], "--weight-std", "finite"),
    (["evaluate", "run", "--data-dir", "c", "-j", "-1"], "--workers", ">= 0"),
    (["evaluate", "run", "--data-dir", "c", "--split", "../x"], "--split", "invalid choice"),
    (["prepare", "src", "out", "--chunk-size", "0"], "--chunk-size", ">= 1"),
    (["prepare", "src", "out", "--size", "-5"], "--size", ">= 1"),
    (["figures", "run", "--data-dir", "c", "--batch", "0"], "--batch-size", ">= 1"),
    (["figures", "run", "--data-dir", "c", "--images", "0"], "--images", ">= 1"),
    (["figure1", "--max-epochs", "-1"], "--max-epochs", ">= 1"),
    (["figure1", "--max-epochs", "0"], "--max-epochs", ">= 1"),
    (["figure1", "--train-images", "0"], "--train-images", ">= 1"),
    (["figure1", "--lr-relu", "0"], "--lr-relu", "positive"),
    (["figure1", "--jobs", "0"], "--jobs", ">= 1"),
    (["figure1", "-j", "0"], "--workers", ">= 1"),
    (["figure1", "--activations", "relu,relu"], "--activations", "twice"),
    (["figure1", "--activations", "sigmoid"], "--activations", "subset of relu,tanh"),
    (["figure1", "--device", "cpu,cuda:0"], "--device", "one device"),
    (["figure1", "--device", "gpu"], "--device", "cuda:0"),
    (["figure1-sweep", "--lrs", "0.01,nan"], "--lrs", "finite"),
]


@pytest.mark.parametrize("argv,option,expected", REFUSED,
                         ids=[" ".join(a[0][:1] + a[0][-2:]) for a in REFUSED])
def test_bad_values_are_refused_before_any_work(argv, option, expected, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and option in err and expected in err and "Traceback" not in err


def test_a_new_run_needs_its_cache(tmp_path, capsys):
    assert cli.main(["train", "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "a new run needs the cache to train on: --data-dir CACHE" in err


def test_train_options_left_out_are_told_apart_from_defaults():
    """On --resume only what the user typed is compared with the run: the parser keeps
    None for every setting not given (the defaults are the recipe's and the model's)."""
    args = cli.build_parser().parse_args(["train", "--resume"])
    for name in (*cli.RECIPE_OPTIONS, *cli.MODEL_OPTIONS, "devices", "data_dir"):
        assert getattr(args, name) is None, name
    from alexnet.imagenet_train import Recipe
    assert cli.build_parser().parse_args(["train", "--lr", "0.01"]).lr == Recipe.lr


def test_loader_refuses_negative_workers():
    from test_loader import numbered
    with pytest.raises(ValueError, match="workers must be >= 0"):
        Loader(numbered(8), 4, workers=-1)


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"alexnet {__version__}"
    for command in ("train", "evaluate", "figures", "prepare", "figure1", "figure1-sweep",
                    "inspect"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "--no-progress" in text or command == "inspect"
        if command in ("train", "evaluate", "figures"):
            assert "--batch-size N, -b N, --batch N" in text
            assert "--data-dir DIR, --data DIR" in text and "(default: None)" not in text
            assert "(default: 2)" in text or command == "figures"
        for action in cli.build_parser()._subparsers._group_actions[0].choices[command]._actions:
            assert action.help, f"{command} {action.option_strings} has no help"


def test_old_and_new_spellings_mean_the_same():
    p = cli.build_parser()
    old = p.parse_args(["train", "--data", "c", "--out", "o", "--batch", "8", "--workers", "1"])
    new = p.parse_args(["train", "--data-dir", "c", "-o", "o", "-b", "8", "-j", "1"])
    assert vars(old) == vars(new)
    assert p.parse_args(["figure1", "--jobs", "2"]).processes == 2
    assert p.parse_args(["train", "--data-dir", "c", "--resume"]).resume is True
    assert p.parse_args(["train", "--data-dir", "c", "--resume", "runs/x"]).resume == "runs/x"


def test_the_resume_command_keeps_every_option_and_the_run():
    assert cli._resume_command(["train", "--data-dir", "c", "-b", "8"]) == \
        "alexnet train --data-dir c -b 8 --resume"
    assert cli._resume_command(["train", "--resume", "runs/x", "--data-dir", "my cache"]) == \
        "alexnet train --data-dir 'my cache' --resume runs/x"
    assert cli._resume_command(["train", "--resume", "--lr", "0.001"]) == \
        "alexnet train --lr 0.001 --resume"


def test_the_hint_after_a_stopped_train_is_true_to_what_is_on_disk(tmp_path):
    """--resume only when there is a checkpoint to resume from."""
    argv = ["train", "--data-dir", "c", "-o", str(tmp_path), "-b", "8"]
    args = cli.build_parser().parse_args(argv)
    args.argv = argv
    assert cli._train_hint(args) == ("no checkpoint was written. To start again:\n  "
                                     f"alexnet train --data-dir c -o {tmp_path} -b 8")
    (tmp_path / "checkpoint.npz").write_bytes(b"x")
    assert cli._train_hint(args).endswith(f"-o {tmp_path} -b 8 --resume")
    assert "the last checkpoint" in cli._train_hint(args)
    saved = cli._train_hint(args, saved="RUN/checkpoint.npz (epoch 2, after batch 5 of 9)")
    assert saved.startswith("a checkpoint was saved: RUN/checkpoint.npz (epoch 2, after batch 5")


def test_figure1_quick_has_its_own_default_folder(monkeypatch):
    import alexnet.experiments as ex
    seen = []

    def fake(data_dir, out, **kw):
        seen.append(out)
        return {}
    monkeypatch.setattr(ex, "figure1", fake)
    monkeypatch.setattr(ex, "describe", lambda s: "")
    cli.main(["figure1", "--quick"])
    cli.main(["figure1"])
    assert seen == ["runs/figure1-quick", "runs/figure1"]


def test_no_bars_when_stderr_is_not_a_terminal(capsys):
    args = cli.build_parser().parse_args(["figure1"])
    assert cli.progress_bars(args) is False          # pytest captures stderr: not a terminal


def test_an_output_path_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    data = write_cifar(tmp_path / "data", n=10)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["figure1", "--data-dir", str(data), "-o", str(blocker / "sub"),
                     "--quick", "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(blocker) in err and "choose another" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_on_figure1_with_processes_exits_130_and_leaves_none(tmp_path):
    data = write_cifar(tmp_path / "data", n=200)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexnet", "figure1", "--data-dir", str(data), "-o", str(out),
         "-j", "2", "--no-download", "--max-epochs", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, MINIDL_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                (out / a / "checkpoint.npz").exists() for a in ("relu", "tanh")):
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)             # what a terminal sends to the group
        start = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert took < 10, took
    assert "interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err and "leaked" not in err, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and session_processes(proc.pid):
        time.sleep(0.1)
    assert session_processes(proc.pid) == []
