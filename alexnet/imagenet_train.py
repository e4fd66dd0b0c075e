"""Training the paper's net on ILSVRC: the recipe of Section 5 over the cache of Section 2.

    net   AlexNet (Figure 2), one column per device, num_classes from the cache
    data  Loader(train): random 227x227 patches + reflections + PCA colour noise, minus
          the training set's mean image (Sections 2, 4.1), built in worker processes
    SGD   batch 128, momentum 0.9, weight decay 0.0005, eps = 0.01 for every layer (Section 5)
    eps   divided by 10 when the validation error stops improving, at most three times
          ("plateau", the text), or at epochs 23, 51, 78 ("2012", what the 2012 run did)
    end   90 epochs ("roughly 90 cycles through the training set")

After every epoch: top-1/top-5 error of the centre patch on the validation split,
metrics.jsonl, training.png (loss, top-1, top-5) and an atomic checkpoint (also
every `checkpoint_minutes`). The checkpoint's `meta` holds everything needed to
use the weights without the command line that made them: the model config, the
recipe, the mean image the net was trained with, the class list, and the identity
of the cache (`cache_identity`), so that `evaluate` and `figures` rebuild the model
from the checkpoint alone and refuse a cache whose classes differ.

`resume=True` continues the identical run: weights, momenta, the dropout RNG, the
schedule and the data position (the Loader starts at the checkpoint's (epoch,
batch), and every batch is a function of (seed, epoch, batch)).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import minidl
from minidl import optim, serialize
from minidl.backend import get_device

from .data.cache import CacheChanged, digest, open_split, read_manifest
from .data.loader import Loader
from .distributed import world
from .evaluate import evaluate, evaluate_split
from .figures import plot_training
from .model import AlexNet, AlexNetConfig
from .settings import check as check_setting
from .train import CHECKPOINT, RunLock, TrainConfig, Trainer

RECIPE_KIND = "alexnet-imagenet"


@dataclass(frozen=True)
class Recipe:
    """The numbers of Section 5 (and the knobs that change the run, so a resume can
    check them). Things that do not change the numbers (devices, workers, progress
    bars, checkpoint frequency) are arguments of `train_imagenet`, not fields here."""
    batch_size: int = 128             # Sec 5: "batch size of 128 examples"
    lr: float = 0.01                  # Sec 5: eps = 0.01, the same for all layers
    momentum: float = 0.9             # Sec 5
    weight_decay: float = 0.0005      # Sec 5
    epochs: int = 90                  # Sec 5: "roughly 90 cycles" (may grow on resume)
    schedule: str = "plateau"         # "plateau" (the text) or "2012" (the run: 23, 51, 78)
    patience: int = 3                 # epochs without improvement before dividing (not in the paper)
    threshold: float = 1e-3           # an "improvement" of val top-1 is at least this (absolute)
    max_reductions: int = 3           # Sec 5: "reduced three times prior to termination"
    milestones: tuple = (23, 51, 78)  # the 2012 run's divisions (cuda-convnet logs)
    color_std: float = 0.1            # Sec 4.1: alpha_i ~ N(0, 0.1)
    seed: int = 0                     # init, dropout, data order and augmentation

    def check(self, where="Recipe: "):
        """The one check of a recipe (alexnet.settings), from the command line or a checkpoint."""
        for f in dataclasses.fields(self):
            check_setting(f.name, getattr(self, f.name), where)
        return self

    @classmethod
    def from_saved(cls, fields, path):
        """The recipe a checkpoint saved (JSON: lists for tuples), checked like the
        command line's: an edited value is an error naming the file."""
        hint = ("; the checkpoint was edited or comes from another version. Use an earlier "
                "checkpoint, or start afresh in another folder.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(f"{path}: meta/recipe has entries this version does not know: "
                             f"{unknown}{hint}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in fields.items()}).check(f"{path}: meta/recipe/")
        except ValueError as e:
            raise ValueError(f"{e}{hint}") from None


# ----------------------------------------------------------------------------- the cache
def cache_identity(cache) -> dict:
    """What a checkpoint remembers of the cache it was trained on.

    classes/wnids_sha1: the class list (what evaluation must agree with); size: the
    cache's image side; train/val: prepare's fingerprints of the file lists (a
    resumed run must see the very same rows); arrays: a fingerprint of each array's
    shape, dtype and checksums (the very same bytes: a rebuilt cache differs here).
    """
    m = read_manifest(cache)
    wnids, splits, arrays = m["wnids"], m["splits"], m["arrays"]
    names = ("train_images", "train_labels", "val_images", "val_labels", "mean", "pca")
    return {"size": m["size"], "classes": len(wnids), "wnids_sha1": _sha1(wnids),
            **{s: splits[s].get("fingerprint") for s in ("train", "val") if s in splits},
            "arrays": {n: digest(arrays[n]) for n in names if n in arrays}}


def cache_differences(saved, now) -> list:
    """'data.NAME: saved -> now' for each entry of a run's cache identity that the cache
    now differs in (entries one side lacks, from older versions, are not compared)."""
    a, b = _flat({"data": saved}), _flat({"data": now})
    return [f"{k.split('.')[-1]}: other contents (its shape, dtype or checksums differ)"
            if k.startswith("data.arrays.") else f"{k}: {a[k]!r} -> {b[k]!r}"
            for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def _sha1(wnids) -> str:
    return hashlib.sha1("\n".join(wnids).encode()).hexdigest()


def check_classes(meta: dict, cache, where="checkpoint"):
    """Raise a clear error if the cache's classes or image size are not the checkpoint's."""
    have = cache_identity(cache)
    want = meta["data"]
    if have["wnids_sha1"] != want["wnids_sha1"]:
        wnids = read_manifest(cache)["wnids"]
        ours = meta.get("wnids") or []
        diff = sorted(set(ours) ^ set(wnids))
        raise ValueError(
            f"the {where} was trained on {want['classes']} classes ({', '.join(ours[:3])}...), "
            f"but the cache {cache} has {have['classes']} classes ({', '.join(wnids[:3])}...)"
            + (f"; they differ in {len(diff)} WNIDs, e.g. {diff[:3]}" if diff else
               "; the same WNIDs in another order") +
            ". Use the cache the net was trained on (its class k must be the net's output k).")
    if have["size"] != want["size"]:
        raise ValueError(f"the {where} was trained on a {want['size']}x{want['size']} cache, "
                         f"{cache} holds {have['size']}x{have['size']} images; prepare the data "
                         f"again with --size {want['size']}")


# ----------------------------------------------------------------------------- the net
def parse_devices(devices, columns):
    """'cuda:0,cuda:1' / 'cpu:0,cpu:1' / 'cpu' -> one device name per column."""
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = list(devices or ["cpu"])
    if len(devices) == 1:
        devices = devices * columns
    if len(devices) != columns:
        raise ValueError(f"{columns} column(s) need {columns} device(s) (or one for all), "
                         f"found {devices}")
    return [str(get_device(d)) for d in devices]


def model_config(classes, columns=2, input_size=227, conv_channels=None, fc_features=None,
                 **overrides) -> AlexNetConfig:
    """The paper's net for `classes` classes; smaller channels for tests and quick runs."""
    cfg = AlexNetConfig(num_classes=classes, input_size=input_size, **overrides)
    if columns == 1:
        cfg = cfg.one_column()   # Section 3.2's one-GPU baseline: half the kernels (not conv5's)
    elif columns != 2:
        raise ValueError(f"columns must be 1 or 2, found {columns}")
    if conv_channels is not None:
        cfg = dataclasses.replace(cfg, conv_channels=tuple(int(c) for c in conv_channels))
    if fc_features is not None:
        cfg = dataclasses.replace(cfg, fc_features=int(fc_features))
    cfg.check()
    return cfg


# What `load_checkpoint` and a resume read from a checkpoint (minidl.serialize.check).
META_SCHEMA = {"meta": {"kind": str, "model": dict, "recipe": dict, "data": dict, "mean": np.ndarray,
                        "wnids": list, "devices": list},
               "model": dict, "train": {"epoch": int}}


def config_from_meta(meta) -> AlexNetConfig:
    """AlexNetConfig from a checkpoint's meta (JSON turned tuples into lists)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()}
    return AlexNetConfig(**fields)


def load_checkpoint(path, devices=None):
    """(model in eval mode, meta) from a checkpoint of `train_imagenet` (a file or its run folder).

    devices: default the training run's devices when they exist here, else the CPU.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    state = serialize.load(path)
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != RECIPE_KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise ValueError(f"{path} is not a checkpoint of `alexnet train` (its meta says "
                         f"kind={kind!r}); expected {RECIPE_KIND!r}")
    serialize.check(state, META_SCHEMA, path)
    Recipe.from_saved(meta["recipe"], path)
    mean = meta["mean"]
    try:
        cfg = config_from_meta(meta)
        if not (mean.ndim == 3 and mean.shape[2] == 3 and mean.shape[0] == mean.shape[1]
                >= cfg.input_size and np.isfinite(mean).all()):
            raise ValueError(f"meta/mean should be the mean image (S, S, 3), S >= the input "
                             f"size {cfg.input_size}, finite; found shape {mean.shape}")
        if devices is None:
            try:
                devices = parse_devices(meta["devices"], cfg.columns)
            except RuntimeError:       # trained on GPUs, read on a machine without them
                devices = "cpu"
        model = AlexNet(cfg, devices=parse_devices(devices, cfg.columns))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ValueError(f"{path}: cannot build the net it describes ({type(e).__name__}: {e}); "
                         "the checkpoint was edited or comes from another version. Use an "
                         "earlier checkpoint.") from None
    model.eval()
    return model, dict(meta, epochs_trained=state["train"]["epoch"])


# ----------------------------------------------------------------------------- training
class _RunTrainer(Trainer):
    """The trainer, plus: training.png redrawn after every epoch, and the cache checked
    before each validation (a rebuilt or deleted cache stops the run, its epoch saved)."""

    def __init__(self, *args, cache=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache = cache

    def _end_epoch(self):
        if self.cache is not None:
            self.comm.root_check(self._check_cache)
        record = super()._end_epoch()
        if self.comm.is_root:
            plot_training(self.state.history, self.out / "training.png", title=self.cfg.run_name)
        return record

    def _check_cache(self):
        try:
            differences = cache_differences(self.extra_meta["data"], cache_identity(self.cache))
            what = (f"the cache {self.cache} changed while this run trained on it ("
                    f"{'; '.join(differences[:3])}): it was rebuilt (`alexnet prepare "
                    "--rebuild`) or replaced")
        except (OSError, ValueError) as e:
            differences = [str(e)]
            what = (f"the cache {self.cache} cannot be read any more ({e}): it was deleted, "
                    "moved or damaged while this run trained on it")
        if not differences:
            return
        self.save()     # the epoch's training, before a validation on other data
        raise CacheChanged(
            f"{what}. The run stops: epoch {self.state.epoch + 1}'s training is saved in "
            f"{self.checkpoint_path}, done on the cache as it was. To go on, put that cache "
            "back and run the same command with --resume; or start a new run with another "
            "--output-dir.")


def _schedule(recipe: Recipe, opt):
    if recipe.schedule == "2012":
        return optim.StepSchedule(opt, recipe.milestones)
    return optim.ReduceOnPlateau(opt, factor=10.0, patience=recipe.patience,
                                 threshold=recipe.threshold, max_reductions=recipe.max_reductions)


# Settings a resumed run may change: they alter no saved state, only what comes next.
MAY_CHANGE_ON_RESUME = ("lr", "epochs")
RESUME_RULE = ("the learning rate (--lr), --epochs and logging options (--no-progress, "
               "--checkpoint-minutes, --checkpoint-steps, --workers, --devices) may change on "
               "resume; the other settings come from the checkpoint (leave them out, or give "
               "the saved values)")
MODEL_OPTIONS = ("columns", "input_size", "conv_channels", "fc_features", "weight_std")


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: tree}


def _json(value):
    return json.loads(json.dumps(value))


def resume_differences(saved, given) -> list:
    """'name: saved -> given' for each setting given explicitly for a resumed run that
    differs from the run saved (`saved`: its meta) and may not change on resume.

    given: {"recipe": {field: value}, "model": {option: value}} of what the command
    line named, nothing else (the rest comes from the checkpoint)."""
    out = []
    for field, value in sorted(given.get("recipe", {}).items()):
        have = saved["recipe"].get(field)
        if field not in MAY_CHANGE_ON_RESUME and _json(value) != _json(have):
            out.append(f"recipe.{field}: {have!r} -> {value!r}")
    for option, value in sorted(given.get("model", {}).items()):
        have = saved["model"].get(option)
        if _json(value) != _json(have):
            out.append(f"model.{option}: {have!r} -> {value!r}")
    return out


def read_run(out) -> dict:
    """The meta of the run saved in `out`, checked (the settings a resumed run continues
    with): its kind, its entries, its recipe (the command line's rules) and model."""
    ckpt = Path(out) / CHECKPOINT
    if not ckpt.exists():
        raise FileNotFoundError(f"--resume: no checkpoint in {out}; run without --resume "
                                "to start the run")
    state = serialize.load(ckpt)
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != RECIPE_KIND:
        raise ValueError(f"{ckpt} is not a checkpoint of `alexnet train`; choose another "
                         "--output-dir")
    serialize.check(state, META_SCHEMA, ckpt)
    Recipe.from_saved(meta["recipe"], ckpt)
    try:
        config_from_meta(meta).check()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{ckpt}: meta/model does not describe a net ({e}); the checkpoint was "
                         "edited or comes from another version. Use an earlier checkpoint, or "
                         "start afresh in another folder.") from None
    return meta


def train_imagenet(cache=None, out="runs/alexnet", recipe=None, columns=None, devices=None,
                   input_size=None, conv_channels=None, fc_features=None, weight_std=None,
                   resume=False, workers=2, eval_batch_size=None, checkpoint_minutes=10.0,
                   checkpoint_steps=0, progress=True) -> list:
    """Train AlexNet on a prepared cache (Section 5); returns the per-epoch history.

    cache:       a folder made by `alexnet prepare` (train and val splits); on resume,
                 default: the one the run was trained on.
    out:         checkpoint.npz, metrics.jsonl, training.png, run.json go here.
    recipe:      a `Recipe`, or a dict of the fields given (the others: the paper's,
                 `Recipe()`; on resume: the saved run's).
    columns:     2 (Figure 2) or 1 (Section 3.2's baseline); devices: one per column
                 (default the CPU; on resume: the run's).
    input_size:  the patch side (227; the cache must be at least that big).
    conv_channels, fc_features: smaller nets (tests, quick runs); default the paper's.
    weight_std:  the init's std (default Section 5's 0.01; a small net needs more, or its
                 signal fades before fc8: fan-ins of a few dozen, not thousands).
    resume:      continue the run in `out`: its settings come from its checkpoint; the
                 ones given here must agree with them, except the learning rate (which
                 then applies from now on) and the epochs (`RESUME_RULE`); the cache must
                 be the one it was trained on. Without it an existing checkpoint is an error.
    workers:     loader processes (each of the two loaders has this many).

    Under an MPI launcher (`mpiexec -n R`), R processes train this one run, each
    on a share of every batch (alexnet.distributed); they must be given the same
    arguments, and `devices` names the first process's devices on each machine.
    """
    out = Path(out)
    comm = world()
    given = dataclasses.asdict(recipe) if isinstance(recipe, Recipe) else dict(recipe or {})
    model_given = {k: v for k, v in zip(MODEL_OPTIONS, (columns, input_size, conv_channels,
                                                        fc_features, weight_std)) if v is not None}
    ckpt = out / CHECKPOINT
    saved = None
    if resume:
        found = []
        comm.root_check(lambda: found.append(read_run(out)))   # rank 0 reads the run folder
        saved = comm.broadcast_tree(found[0] if comm.is_root else None)
        recipe = Recipe.from_saved(saved["recipe"], ckpt)
        recipe = dataclasses.replace(recipe, **{k: v for k, v in given.items()
                                                if k in MAY_CHANGE_ON_RESUME}).check()
        cache = cache if cache is not None else saved.get("cache")
        devices = devices if devices is not None else saved["devices"]
        if cache is None:
            raise ValueError(f"{ckpt} does not say which cache the run was trained on; give "
                             "it: --data-dir CACHE")
    else:
        recipe = Recipe(**given).check()
        if cache is None:
            raise ValueError("a new run needs the cache to train on: --data-dir CACHE (made by "
                             "`alexnet prepare`)")
    train_split = open_split(cache, "train", pca=recipe.color_std > 0)
    val_split = open_split(cache, "val", mean=False, pca=False)
    if saved is not None:
        cfg = config_from_meta(saved)
    else:
        overrides = {} if weight_std is None else {"weight_std": float(weight_std)}
        cfg = model_config(len(train_split.wnids), columns or 2, input_size or 227,
                           conv_channels, fc_features, **overrides)
    if cfg.input_size > train_split.images.shape[1]:
        raise ValueError(f"input_size {cfg.input_size} is larger than the cache's images "
                         f"({train_split.images.shape[1]}); prepare with a larger --size")
    devices = comm.local_devices(parse_devices(devices or "cpu", cfg.columns))
    meta = {"kind": RECIPE_KIND, "model": asdict(cfg), "recipe": asdict(recipe),
            "data": cache_identity(cache), "cache": str(Path(cache).resolve()),
            "wnids": list(train_split.wnids), "words": list(train_split.words or []),
            "mean": np.asarray(train_split.mean, np.float32), "devices": devices}

    comm.agree("model, recipe or cache", {"model": meta["model"], "recipe": meta["recipe"],
                                           "data": meta["data"], "resume": resume})
    comm.check_batch(recipe.batch_size)

    lock = RunLock(out)            # one process trains in a run folder (rank 0, for all)

    def check_out():
        lock.acquire()
        try:
            check_run_folder()
        except BaseException:
            lock.release()
            raise

    def check_run_folder():
        if ckpt.exists() and not resume:
            raise FileExistsError(f"{out} already holds a run ({ckpt}); to continue it, run the "
                                  "same command with --resume added; to start another, choose "
                                  "another --output-dir")
        if saved is None:
            return
        differences = resume_differences(saved, {"recipe": given, "model": model_given})
        if differences:
            raise ValueError(f"--resume continues the identical run, but these settings "
                             f"differ from the run saved in {out} (saved -> now):\n  "
                             + "\n  ".join(differences) + f"\nOnly {RESUME_RULE}. Run with "
                             f"the saved settings, or start a new run with another "
                             f"--output-dir.")
        changed = cache_differences(saved["data"], meta["data"])
        if changed:
            raise CacheChanged(
                f"{cache} is not the cache the run in {out} was trained on (saved -> now):\n  "
                + "\n  ".join(changed) + "\nIt was rebuilt or replaced since (e.g. by "
                "`alexnet prepare --rebuild`), or it is another cache. A run continues only on "
                "the data it began with: give its cache (--data-dir), or start a new run with "
                "another --output-dir.")
    comm.root_check(check_out)      # rank 0 reads and writes the run folder
    try:
        minidl.random.manual_seed(recipe.seed)                   # dropout masks
        model = AlexNet(cfg, devices=devices, seed=recipe.seed)  # Sec 5's init
        opt = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                        weight_decay=recipe.weight_decay)
        schedule = _schedule(recipe, opt)
        pca = (train_split.eigvecs, train_split.eigvals) if recipe.color_std > 0 else False
        train = Loader(train_split, recipe.batch_size, train=True, crop=cfg.input_size,
                       seed=recipe.seed, workers=workers, color_std=recipe.color_std, pca=pca,
                       shard=comm.shard)
        val = Loader(val_split, eval_batch_size or recipe.batch_size, train=False, crop=cfg.input_size,
                     workers=workers, mean=train_split.mean, shard=comm.shard)

        def on_val(m):
            r = comm.combine_means(evaluate(m, val.epoch(0), progress=progress and comm.is_root,
                                            desc="val (centre patch)", total=len(val)))
            return {"val_loss": r["loss"], "val_top1": r["top1"], "val_top5": r["top5"]}

        trainer = _RunTrainer(
            model, opt, train, out,
            TrainConfig(max_epochs=recipe.epochs, checkpoint_minutes=checkpoint_minutes,
                        checkpoint_steps=checkpoint_steps, progress=progress, run_name="alexnet"),
            evaluate=on_val, schedule=schedule, schedule_metric="val_top1", extra_meta=meta,
            comm=comm, cache=cache)
        if comm.is_root:
            out.mkdir(parents=True, exist_ok=True)
            run_info = {k: v for k, v in meta.items() if k != "mean"}
            (out / "run.json").write_text(json.dumps(run_info, indent=1, default=str))
        if resume and comm.is_root:         # the others get its state in fit()
            trainer.resume()
            if "lr" in given:               # the rate from now on; a fixed schedule is rescaled
                if hasattr(schedule, "base_lr"):
                    schedule.base_lr *= float(given["lr"]) / opt.lr
                opt.lr = float(given["lr"])
        try:
            return trainer.fit()
        finally:           # Ctrl-C, a diverged loss, a failed worker: no process is left behind
            train.close()
            val.close()
    finally:
        if comm.is_root:
            lock.release()


# ----------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(ckpt, cache, split="val", patches="both", batch_size=128, workers=2,
                        devices=None, progress=True) -> dict:
    """Top-1/top-5 error of a trained net on a cache split (Section 6).

    patches: "1" (the centre patch), "10" (the softmax averaged over the 10 patches
    of Section 4.1) or "both" (one pass over the 10 patches gives both: the centre
    patch is one of them). Returns {"centre": {...}, "ten": {...}} with the
    requested entries, each {"loss", "top1", "top5", "n"}, and what was evaluated.
    """
    model, meta = load_checkpoint(ckpt, devices)
    check_classes(meta, cache)
    data = open_split(cache, split, mean=False, pca=False)   # the net's mean is the checkpoint's
    result = evaluate_split(model, data, crop=meta["model"]["input_size"], mean=meta["mean"],
                            patches=patches, batch_size=batch_size, workers=workers,
                            progress=progress, desc=f"evaluate {split}")
    result.update(split=split, cache=str(cache), checkpoint=str(ckpt),
                  epochs_trained=meta["epochs_trained"])
    return result


def describe_evaluation(result) -> str:
    """The result as a few lines for the terminal (the paper's numbers beside it)."""
    lines = [f"{result['split']} split of {result['cache']}, {result['epochs_trained']} epoch(s) "
             f"of training:"]
    names = {"centre": "centre patch", "ten": "10-patch average"}
    for key in ("centre", "ten"):
        if key in result:
            r = result[key]
            lines.append(f"  {names[key]:<17} top-1 error {100 * r['top1']:5.2f}%  top-5 error "
                         f"{100 * r['top5']:5.2f}%  ({r['n']} images)")
    lines.append("  the paper (ILSVRC-2012 val, 1 CNN): top-1 error 40.7%, top-5 error 18.2%")
    return "\n".join(lines)


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- figures
def make_figures(ckpt, cache, out=None, images=5, neighbours=6, max_train=2000, batch_size=64,
                 devices=None, seed=0, progress=True, devkit=None) -> dict:
    """Figures 3 and 4 (Section 6.1) of a trained net, as PNGs in `out` (default: the
    checkpoint's folder). Returns {"figure3": path, "figure4": path}."""
    from .figures_imagenet import figure4, plot_figure3
    model, meta = load_checkpoint(ckpt, devices)
    check_classes(meta, cache)
    out = Path(out) if out else (Path(ckpt) if Path(ckpt).is_dir() else Path(ckpt).parent)
    out.mkdir(parents=True, exist_ok=True)
    f3 = plot_figure3(model, out / "figure3.png")
    f4 = figure4(model, open_split(cache, "val", mean=False, pca=False),
                 open_split(cache, "train", mean=False, pca=False),
                 meta["model"]["input_size"], meta["mean"], out / "figure4.png", images=images,
                 neighbours=neighbours, max_train=max_train, batch_size=batch_size, seed=seed,
                 progress=progress, devkit=devkit)
    return {"figure3": str(f3), "figure4": str(f4)}
