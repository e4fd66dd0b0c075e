"""Experiments: recipes over the model, the data and the trainer.

Figure 1 (Section 3.1): "A four-layer convolutional neural network with
ReLUs (solid line) reaches a 25% training error rate on CIFAR-10 six times
faster than an equivalent network with tanh neurons (dashed line). The
learning rates for each network were chosen independently to make training
as fast as possible. No regularization of any kind was employed."
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import minidl
from minidl import optim
from minidl.cpu.parallel import available_cores  # noqa: F401  (the CLI's default jobs)

from .data import cifar10
from .data.arrays import ArrayBatches
from .evaluate import evaluate
from .figures import plot_figure1, plot_training
from .model import CifarNet, CifarNetConfig
from .runner import Run, run_all, shared
from .train import CHECKPOINT, TrainConfig, Trainer, read_metrics

# Learning rates chosen by the sweep recorded in docs/section3_1_relu.md
# (`alexnet figure1-sweep`): for each activation, the rate with the lowest
# training error after three epochs on the whole training set, over
# 0.002 ... 0.032 in factors of 2 (momentum 0.9, batch 128, no decay).
FIGURE1_LR = {"relu": 0.004, "tanh": 0.016}


@dataclass(frozen=True)
class Figure1Config:
    activations: tuple = ("relu", "tanh")
    target: float = 0.25              # Figure 1's line: 25% training error
    max_epochs: int = 60              # a bound for each net (tanh needs 47 to 51)
    batch_size: int = 128             # cuda-convnet's default
    momentum: float = 0.9
    lr: tuple = tuple(sorted(FIGURE1_LR.items()))
    train_images: int = 50000         # --quick uses a balanced subset
    seed: int = 0

    def lr_of(self, activation):
        return dict(self.lr)[activation]


def epochs_to_target(errors, target):
    """Epochs to reach `target` training error, linearly interpolated between epochs.

    errors[i] is the error measured over epoch i+1. Returns None if never reached.
    """
    previous = None
    for i, e in enumerate(errors):
        if e <= target:
            if previous is None or previous == e:
                return float(i + 1)
            return i + (previous - target) / (previous - e)   # between epoch i and i+1
        previous = e
    return None


# Epochs each net usually needs to reach the target (docs/results.md): the ETA's guess.
FIGURE1_EXPECTED_EPOCHS = {"relu": 8, "tanh": 52}


def figure1(data_dir=None, out="runs/figure1", quick=False, config: Figure1Config = None,
            download=True, progress=True, restart=False, report_only=False, jobs=1,
            allow_unofficial=False, device="cpu") -> dict:
    """Train the CIFAR-10 net with ReLU and with tanh; write figure1.png and the curves.

    The two nets are two runs of the experiment runner (alexnet/runner.py): each
    trains in out/<activation>/ with a checkpoint, and running the command again
    continues where it stopped (unless `restart`). With `jobs` > 1 they train
    side by side in processes, the cores shared out among them: the same curves,
    sooner. With `report_only`, nothing trains: the figure and summary are made
    from the epochs the runs in `out` have finished so far. `allow_unofficial`:
    accept a local CIFAR-10 archive whose MD5 is not the official one
    (`cifar10.check_official`). `device`: "cpu", or a GPU ("cuda:0"), which trains
    the nets one after the other in this process.
    Returns the summary written to out/figure1.json.
    """
    cfg = config or Figure1Config()
    if quick:
        cfg = replace(cfg, train_images=min(cfg.train_images, 5000), max_epochs=min(cfg.max_epochs, 3))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        data = cifar10.load_cifar10(data_dir, download=download, progress=progress,  # fetch, check
                                    allow_unofficial=allow_unofficial)
        print(f"figure1: CIFAR-10 from {cifar10.find_cifar10(data_dir)}; "
              f"{cfg.train_images:,} training images; results in {out}/", flush=True)
        del data
        runs = [Run(act, _figure1_run, dict(data_dir=data_dir, activation=act, cfg=cfg,
                                            restart=restart, device=device),
                    expected_epochs=min(cfg.max_epochs, FIGURE1_EXPECTED_EPOCHS.get(act, cfg.max_epochs)))
                for act in cfg.activations]
        run_all(runs, out, jobs=jobs, progress=progress, device=device,
                title="figure1" + (" --quick" if quick else ""))

    curves, summary = {}, {"config": asdict(cfg), "quick": quick, "runs": {}}
    for act in cfg.activations:
        run_dir = out / act
        history = read_metrics(run_dir)
        if not history:
            raise FileNotFoundError(f"{run_dir} has no finished epoch to report; "
                                    "train first (alexnet figure1 without --report-only)")
        lr = _saved_meta(run_dir / CHECKPOINT)["lr"]
        errors = [r["train_top1"] for r in history]
        curves[act] = errors
        seconds = sum(r["seconds"] for r in history)
        images = sum(r["images_per_s"] * r["seconds"] for r in history if r.get("images_per_s"))
        summary["runs"][act] = {
            "lr": lr, "epochs_run": len(history),
            "epochs_to_target": epochs_to_target(errors, cfg.target),
            "train_error": errors, "test_error": [r.get("test_top1") for r in history],
            "seconds": seconds,
            "images_per_s": images / seconds if seconds else None,   # all images / all seconds
        }
        plot_training(history, run_dir / "training.png", title=f"CIFAR-10, {act}")

    summary["ratio"] = _ratio(summary["runs"], cfg)
    plot_figure1(curves, out / "figure1.png", target=cfg.target, note=_figure1_note(summary, quick))
    _write_curves(out, curves)
    (out / "figure1.json").write_text(json.dumps(summary, indent=1))
    return summary


def _figure1_note(summary, quick):
    """What the plot must say besides the curves: a quick run, or no ratio to give."""
    notes = []
    if quick:
        notes.append("--quick: 5,000 images, 3 epochs")
    ratio = summary.get("ratio")
    if not ratio or not ratio.get("tanh_over_relu"):
        reached = [a for a, r in summary["runs"].items() if r["epochs_to_target"] is not None]
        notes.append("no net reached 25% training error: no ratio" if not reached else
                     f"only {', '.join(reached)} reached 25% training error: no ratio")
    return "; ".join(notes) or None


@functools.lru_cache(maxsize=2)
def _figure1_data(data_dir, cfg, download=False, progress=False, allow_unofficial=False):
    data = cifar10.load_cifar10(data_dir, download=download, progress=progress,
                                allow_unofficial=allow_unofficial)
    if cfg.train_images < len(data.y_train):
        data = data.subset(cfg.train_images, n_test=min(len(data.y_test), 2000), seed=cfg.seed)
    return data, cifar10.mean_image(data.x_train)


def _figure1_run(run_dir, on_epoch, data_dir, activation, cfg, restart, device):
    """One net of Figure 1 as a run of the experiment runner."""
    data, mean = _figure1_data(data_dir, cfg)
    return train_cifar(data, mean, activation, cfg, run_dir, progress=False, restart=restart,
                       device=device, on_epoch=on_epoch)


def train_cifar(data, mean, activation, cfg: Figure1Config, run_dir, progress=True,
                restart=False, bar_position=0, device="cpu", on_epoch=None):
    """One net of Figure 1: train until `target` training error or `max_epochs`.

    device: where the net trains ("cpu", or "cuda:0" for a GPU). In a worker of
    the experiment runner the batches take the process's share of the cores."""
    minidl.random.manual_seed(cfg.seed)
    model = CifarNet(CifarNetConfig(activation=activation), seed=cfg.seed, device=device)
    opt = optim.SGD(model.parameters(), lr=cfg.lr_of(activation), momentum=cfg.momentum,
                    weight_decay=0.0)                        # no regularization of any kind
    batches = shared(ArrayBatches(data.x_train, data.y_train, mean, cfg.batch_size, seed=cfg.seed))
    test = ArrayBatches(data.x_test, data.y_test, mean, 500, shuffle=False)

    def on_test(m):
        r = evaluate(m, test, ks=(1,))
        return {"test_loss": r["loss"], "test_top1": r["top1"]}

    # what makes this run this run (max_epochs may grow: the run then continues)
    meta = {"experiment": "figure1", "activation": activation, "lr": cfg.lr_of(activation),
            "target": cfg.target, "batch_size": cfg.batch_size, "momentum": cfg.momentum,
            "train_images": cfg.train_images, "seed": cfg.seed}
    trainer = Trainer(model, opt, batches, run_dir,
                      TrainConfig(max_epochs=cfg.max_epochs, topk=(1,), progress=progress,
                                  run_name=f"figure1 {activation}", bar_position=bar_position),
                      evaluate=on_test, stop=lambda h: h[-1]["train_top1"] <= cfg.target,
                      extra_meta=meta, on_epoch=on_epoch)
    if restart and trainer.checkpoint_path.exists():
        trainer.checkpoint_path.unlink()
    if trainer.checkpoint_path.exists():
        saved = _saved_meta(trainer.checkpoint_path)
        now = json.loads(json.dumps(meta))
        if saved != now:
            differ = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                      for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
            raise ValueError(f"{run_dir} holds a run with other settings (saved -> now: "
                             f"{'; '.join(differ)}); only --max-epochs may change when a run "
                             "continues. Use another --output-dir, or --restart to discard it")
        trainer.resume()
    return trainer.fit()


def _saved_meta(path) -> dict:
    """The meta of a Figure 1 checkpoint, checked (an edited file is a clear error)."""
    state = minidl.serialize.load(path)
    return minidl.serialize.check(state, {"meta": {"lr": float, "activation": str}}, path)["meta"]


def _ratio(runs, cfg):
    """tanh's epochs to the target over ReLU's; when tanh stopped short of the
    target, a lower bound, and the same ratio at the best error tanh did reach."""
    if "relu" not in runs or "tanh" not in runs or runs["relu"]["epochs_to_target"] is None:
        return None
    relu, tanh = runs["relu"], runs["tanh"]
    if tanh["epochs_to_target"] is not None:
        return {"tanh_over_relu": tanh["epochs_to_target"] / relu["epochs_to_target"]}
    reached = min(tanh["train_error"])          # the lowest error tanh got to
    at_reached = {"error": reached,
                  "relu_epochs": epochs_to_target(relu["train_error"], reached),
                  "tanh_epochs": epochs_to_target(tanh["train_error"], reached)}
    at_reached["tanh_over_relu"] = at_reached["tanh_epochs"] / at_reached["relu_epochs"]
    return {"tanh_over_relu": None,
            "at_least": tanh["epochs_run"] / relu["epochs_to_target"],
            "at_tanh_best": at_reached}


def _write_curves(out, curves):
    n = max(len(v) for v in curves.values())
    lines = ["epoch," + ",".join(f"{a}_train_error" for a in curves)]
    for i in range(n):
        lines.append(f"{i + 1}," + ",".join(f"{v[i]:.5f}" if i < len(v) else ""
                                           for v in curves.values()))
    (Path(out) / "figure1.csv").write_text("\n".join(lines) + "\n")


def describe(summary) -> str:
    """A few lines for the terminal."""
    lines = []
    for act, r in summary["runs"].items():
        e = r["epochs_to_target"]
        where = (f"25% training error after {e:.2f} epochs" if e is not None
                 else f"25% training error not reached in {r['epochs_run']} epochs")
        lines.append(f"{act:>5}: lr {r['lr']:g}, {where} "
                     f"(final {r['train_error'][-1]:.3f}; {r['images_per_s']:.0f} img/s)")
    ratio = summary.get("ratio")
    if ratio and ratio.get("tanh_over_relu"):
        lines.append(f"tanh needs {ratio['tanh_over_relu']:.1f}x the epochs of ReLU "
                     "(the paper: about 6x)")
    elif ratio:
        best = ratio["at_tanh_best"]
        bound = (f" (so it needs at least {ratio['at_least']:.1f}x ReLU's epochs)"
                 if ratio["at_least"] > 1 else "")
        lines.append(f"tanh has not reached 25% yet{bound}; to reach {best['error']:.3f}, "
                     f"tanh's best so far, it took {best['tanh_epochs']:.1f} epochs and ReLU "
                     f"{best['relu_epochs']:.1f}: {best['tanh_over_relu']:.1f}x")
    return "\n".join(lines)


def figure1_sweep(data_dir=None, out="runs/figure1-sweep", lrs=(0.002, 0.004, 0.008, 0.016, 0.032),
                  activations=("relu", "tanh"), train_images=50000, epochs=3, seed=0,
                  download=True, progress=True, allow_unofficial=False) -> dict:
    """The learning-rate sweep behind FIGURE1_LR ("chosen independently to make
    training as fast as possible"): each activation, each rate, a few epochs on
    the training set (or a class-balanced subset); the best rate is the one with
    the lowest training error at the end (ties: the earlier epoch to reach it).
    Diverged runs count as 1.0. With the whole set and seed 0, each run retraces
    the first epochs of `alexnet figure1` at that rate.
    """
    data = cifar10.load_cifar10(data_dir, download=download, progress=progress,
                                allow_unofficial=allow_unofficial)
    data = data.subset(train_images, n_test=1000, seed=seed)
    mean = cifar10.mean_image(data.x_train)
    out = Path(out)
    results = {}
    for act in activations:
        for lr in lrs:
            cfg = Figure1Config(activations=(act,), max_epochs=epochs, lr=((act, lr),),
                                train_images=train_images, seed=seed, target=0.0)
            run = out / f"{act}-lr{lr:g}"
            try:
                history = train_cifar(data, mean, act, cfg, run, progress)
                errors = [r["train_top1"] for r in history]
            except Exception as e:              # TrainingDiverged, most likely
                errors = [1.0] * epochs
                print(f"{act} lr={lr:g}: {e}")
            results.setdefault(act, {})[lr] = errors
            print(f"{act:>5} lr={lr:<7g} training error per epoch: "
                  + " ".join(f"{e:.3f}" for e in errors), flush=True)
    best = {act: min(r, key=lambda lr: (r[lr][-1], r[lr])) for act, r in results.items()}
    summary = {"lrs": list(lrs), "train_images": train_images, "epochs": epochs,
               "errors": {a: {str(lr): e for lr, e in r.items()} for a, r in results.items()},
               "best": best}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sweep-{'-'.join(activations)}.json").write_text(json.dumps(summary, indent=1))
    return summary
