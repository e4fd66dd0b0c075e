"""The `alexnet` command: argparse subcommands that call the library (no logic here).

    alexnet figure1   [--data-dir D] [--output-dir DIR] [--quick]     Figure 1: ReLU vs tanh
    alexnet claims    [NAME ...] [--quick] [--seeds N]                the paper's other claims
    alexnet inspect   [IMAGE] [--save-maps DIR] [--checkpoint RUN]    every stage for one image
    alexnet prepare   SRC OUT [--workers N]                           ImageNet -> 256x256 cache
    alexnet prepare   --verify CACHE                                  check every checksum
    alexnet train     --data-dir CACHE [--output-dir DIR]             Section 5's recipe
                      [--devices cuda:0,cuda:1] [--columns 2] [--schedule plateau|2012]
    alexnet train     --resume RUN                    continue a run, with its saved settings
    alexnet evaluate  RUN --data-dir CACHE [--patches both]           top-1/top-5 error
    alexnet figures   RUN --data-dir CACHE [--output-dir DIR]         Figures 3 and 4

Options follow the habits of common training scripts: --data-dir, --output-dir/-o,
--batch-size/-b, --workers/-j (data-loading processes), --epochs, --devices, --resume
[PATH]; figure1 and claims train in --processes N. The older spellings (--data, --out,
--batch, --jobs, figure1's -j and --max-epochs) still work. Every value is checked here, before any work starts.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
from pathlib import Path

from . import __version__
from .settings import argument as setting

# ----------------------------------------------------------------------------- values
# The one place command-line values are checked: each type names what it expects.


def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}")
    return value


def positive_int(text):
    """An integer >= 1 (epochs, batch sizes, image counts, chunk sizes)."""
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def count(text):
    """An integer >= 0 (worker processes, seeds, patience; 0 means none/off)."""
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def positive_float(text):
    """A finite number > 0 (learning rates, minutes, standard deviations)."""
    return _number(text, float, lambda v: v > 0, "a positive finite number")


def positive_floats(text):
    """Comma-separated positive finite numbers, e.g. 0.002,0.004."""
    return tuple(positive_float(v.strip()) for v in text.split(","))


def _choices_list(allowed):
    def parse(text):
        items = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of "
                                             f"{','.join(allowed)}, found {text!r}")
        if len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(f"{text!r} names an entry twice")
        return tuple(items)
    parse.__name__ = "list"
    return parse


activations = _choices_list(("relu", "tanh"))
split_names = _choices_list(("train", "val", "test"))


def devices(text):
    """One device per column: cpu, cpu:0,cpu:1, cuda:0,cuda:1 (no device twice)."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items or len(items) > 2:
        raise argparse.ArgumentTypeError(f"expected one or two devices (cpu, cpu:0,cpu:1, "
                                         f"cuda:0,cuda:1), found {text!r}")
    for d in items:
        kind, _, index = d.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
            raise argparse.ArgumentTypeError(f"expected devices like cpu, cpu:1 or cuda:0, "
                                             f"found {d!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"{text!r} names a device twice; give one device for "
                                         "both columns (e.g. cpu) or two different ones")
    return ",".join(items)


def one_device(text):
    """A single device: cpu or cuda:N."""
    d = devices(text)
    if "," in d:
        raise argparse.ArgumentTypeError(f"expected one device (cpu or cuda:N), found {text!r}")
    return d


def progress_bars(args) -> bool:
    """Bars only on a terminal: in a log file they are escape codes. Without bars
    the trainer prints one plain line per epoch."""
    return not args.no_progress and sys.stderr.isatty()


def _resume_command(argv):
    """The command line that was run, with --resume (and its RUN, if one was given) last:
    what to type to continue the run."""
    words, resume = _without_resume(argv)
    return shlex.join(["alexnet", *words, "--resume", *resume])


def _start_command(argv):
    """The command line that was run, without --resume: what starts the run afresh."""
    return shlex.join(["alexnet", *_without_resume(argv)[0]])


def _without_resume(argv):
    """(the words of argv but --resume [RUN], [RUN] or [])."""
    words, resume, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--resume":
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                resume.append(argv[i + 1])
                i += 1
        elif a.startswith("--resume="):
            resume.append(a.split("=", 1)[1])
        else:
            words.append(a)
        i += 1
    return words, resume


def _output_file(path, inputs):
    """Where --json goes. Refused: a file the command reads (`inputs`: files, or
    folders whose files it reads), a folder, and any existing file that is not an
    earlier result of the same command. A new file is fine anywhere, a run folder
    included (`--json RUN/val.json`)."""
    target = Path(path).resolve()
    for p in inputs:
        p = Path(p).resolve()
        if target == p or (p.is_dir() and p in target.parents and target.exists()):
            raise ValueError(f"--json {path} would overwrite {target}, which this command "
                             "reads; write the result elsewhere, e.g. --json result.json")
    if target.is_dir():
        raise ValueError(f"--json {path} is a folder; give a file name, e.g. "
                         f"--json {Path(path) / 'result.json'}")
    if target.exists() and not _is_result(target):
        raise ValueError(f"--json {path} exists and is not a result of `alexnet evaluate`; "
                         "refusing to overwrite it. Give a new file name ending in .json")
    return target


def _is_result(path) -> bool:
    """An earlier `--json` result (a JSON object naming its split and checkpoint)."""
    try:
        if path.stat().st_size > 1 << 20:
            return False
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and {"split", "checkpoint", "cache"} <= set(result)


# ----------------------------------------------------------------------------- commands

def cmd_figure1(args):
    from dataclasses import replace

    from .experiments import Figure1Config, available_cores, describe, figure1
    cfg = Figure1Config()
    overrides = {}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.lr_relu is not None or args.lr_tanh is not None:
        lr = dict(cfg.lr)
        lr.update({k: v for k, v in (("relu", args.lr_relu), ("tanh", args.lr_tanh))
                   if v is not None})
        overrides["lr"] = tuple(sorted(lr.items()))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.train_images is not None:
        overrides["train_images"] = args.train_images
    if args.activations:
        overrides["activations"] = args.activations
    cfg = replace(cfg, **overrides)
    out = args.output_dir or ("runs/figure1-quick" if args.quick else "runs/figure1")
    from .data.cifar10 import CIFAR10NotFound
    try:
        summary = figure1(args.data_dir, out, quick=args.quick, config=cfg,
                          download=not args.no_download, progress=progress_bars(args),
                          restart=args.restart, report_only=args.report_only,
                          jobs=args.processes if args.processes is not None else available_cores(),
                          allow_unofficial=args.allow_unofficial_archive, device=args.device)
    except CIFAR10NotFound as e:
        raise FileNotFoundError(f"{e}\nFrom the command line: --data-dir D names the place "
                                "(a folder, the archive, or cifar-10-batches-py); the "
                                "download runs unless --no-download.") from e
    print(describe(summary))
    print(f"wrote {out}/figure1.png, figure1.csv, figure1.json")


def cmd_claims(args):
    from minidl.cpu.parallel import available_cores

    from .claims import claims, describe
    from .data.cifar10 import CIFAR10NotFound
    out = args.output_dir or ("runs/claims-quick" if args.quick else "runs/claims")
    try:
        summary = claims(args.names or None, args.data_dir, out, seeds=args.seeds,
                         quick=args.quick,
                         jobs=args.processes if args.processes is not None else available_cores(),
                         progress=progress_bars(args), device=args.device, epochs=args.epochs,
                         train_images=args.train_images, report_only=args.report_only)
    except CIFAR10NotFound as e:
        raise FileNotFoundError(f"{e}\nFrom the command line: --data-dir D names the place "
                                "(a folder, the archive, or cifar-10-batches-py)") from e
    print(describe(summary))
    print(f"wrote {out}/claims.md, claims.json, and per claim NAME.png and NAME.csv")


def cmd_figure1_sweep(args):
    from .experiments import figure1_sweep
    summary = figure1_sweep(args.data_dir, args.output_dir, lrs=args.lrs,
                            train_images=args.train_images, activations=args.activations,
                            epochs=args.epochs, download=not args.no_download,
                            progress=progress_bars(args),
                            allow_unofficial=args.allow_unofficial_archive)
    print("best learning rates:", summary["best"])


def cmd_inspect(args):
    from .inspection import inspect_image
    inspect_image(args.image, columns=args.columns,
                  devices=tuple(args.devices.split(",")) if args.devices else None,
                  save_maps=args.save_maps, checkpoint=args.checkpoint, seed=args.seed)


def cmd_prepare(args):
    if args.verify is not None:
        return _verify(args)
    if args.src is None or args.out is None:
        raise ValueError("expected SRC and OUT (alexnet prepare SRC OUT), or --verify CACHE to "
                         "check a cache")
    from .data.prepare import prepare
    manifest = prepare(args.src, args.out, workers=args.workers, splits=args.splits,
                       size=args.size, chunk_size=args.chunk_size, devkit=args.devkit,
                       exif_transpose=args.exif_transpose, progress=progress_bars(args),
                       max_chunks=args.max_chunks, rebuild=args.rebuild)
    for name, entry in manifest["splits"].items():
        state = "complete" if entry["complete"] else "INCOMPLETE (run the command again)"
        print(f"{name}: {entry['valid']} images, {entry['skipped']} skipped, "
              f"{entry.get('refused', 0)} refused, {state}")
    print(f"{len(manifest.get('wnids', []))} classes; cache in {args.out} "
          f"(skipped and refused files: {args.out}/report.json)")


def _verify(args):
    """`alexnet prepare --verify CACHE`: every checksum; 0 if sound, 1 with what is wrong."""
    import time

    import numpy as np

    from .data.cache import read_manifest, verify
    if args.src is not None:
        raise ValueError(f"--verify checks one cache: alexnet prepare --verify CACHE (found "
                         f"also {args.src!r}{' and ' + repr(args.out) if args.out else ''})")
    start = time.monotonic()
    version = read_manifest(args.verify, any_version=True)["version"]
    problems = verify(args.verify, progress=progress_bars(args))
    if problems:
        print(f"{args.verify}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    manifest = read_manifest(args.verify)
    gib = sum(math.prod(r["shape"]) * np.dtype(r["dtype"]).itemsize if "shape" in r else r["bytes"]
              for r in manifest["arrays"].values()) / 2**30
    done = "upgraded to checksums, " if version == 1 else ""
    print(f"{args.verify}: sound ({done}{len(manifest['arrays'])} arrays, {gib:.2f} GiB of "
          f"data checked against the manifest's counts, shapes, dtypes and checksums in "
          f"{time.monotonic() - start:.1f} s)")
    if version == 1:
        print("  its checksums were recorded as the arrays are now: damage from before cannot "
              "be found this way (rebuild from SRC if in doubt)")
    return 0


def _resume_dir(args):
    """--resume [PATH]: the run folder to continue (PATH a run folder or its checkpoint.npz)."""
    from .train import CHECKPOINT
    if args.resume is None:
        return None
    if args.resume is True:
        return Path(args.output_dir)
    path = Path(args.resume)
    if path.is_dir():
        return path
    if path.name == CHECKPOINT:
        return path.parent
    raise ValueError(f"--resume {path}: expected a run folder or its {CHECKPOINT}, found "
                     f"{'a file named ' + path.name if path.exists() else 'nothing there'}")


# The options of `alexnet train` that are settings of the run (Recipe fields and model
# options): left out, they are the paper's for a new run and the saved run's on --resume.
RECIPE_OPTIONS = ("batch_size", "lr", "epochs", "schedule", "patience", "seed")
MODEL_OPTIONS = ("columns", "input_size", "conv_channels", "fc_features", "weight_std")


def cmd_train(args):
    from . import stopping
    from .distributed import world
    from .imagenet_train import train_imagenet
    from .train import CHECKPOINT
    recipe = {k: getattr(args, k) for k in RECIPE_OPTIONS if getattr(args, k) is not None}
    if args.no_pca_noise:
        recipe["color_std"] = 0.0
    model = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
    comm = world()                  # under mpiexec: one of several processes
    stopping.announce(comm.is_root)
    # Under MPI a signal never cuts a rank loose from the others: every rank records
    # it, and they stop together after the same step (alexnet.stopping).
    together = stopping.deferred() if comm.size > 1 else contextlib.nullcontext()
    with comm.abort_on_error("alexnet train", hint=lambda: _train_hint(args)), together:
        run = _resume_dir(args)
        out = run or Path(args.output_dir)

        def check_out():
            if run is None and (out / CHECKPOINT).exists():
                raise FileExistsError(f"{out} already holds a run; to continue it, type:\n  "
                                      f"{_resume_command(args.argv)}\nor choose another "
                                      "--output-dir to start a new one")
        comm.root_check(check_out)  # rank 0 reads and writes the run folder
        history = train_imagenet(args.data_dir, out, recipe, devices=args.devices,
                                 resume=run is not None, workers=args.workers,
                                 eval_batch_size=args.eval_batch_size,
                                 checkpoint_minutes=args.checkpoint_minutes,
                                 checkpoint_steps=args.checkpoint_steps,
                                 progress=progress_bars(args), **model)
    if not comm.is_root:
        return 0
    if history:
        last = history[-1]
        print(f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}, val top-1 error "
              f"{last.get('val_top1', float('nan')):.4f}, top-5 error "
              f"{last.get('val_top5', float('nan')):.4f}")
    print(f"wrote {out}/checkpoint.npz, metrics.jsonl, training.png")


def _train_hint(args, saved=None):
    """What to type after `alexnet train` stopped: true to what is on disk now."""
    from .distributed import world
    from .train import CHECKPOINT
    try:
        out = _resume_dir(args) or Path(args.output_dir)
    except ValueError:
        out = Path(args.output_dir)
    size = world().size
    how = (f" (under the same launcher, e.g. mpiexec -n {size})" if size > 1 else "")
    if saved:
        return f"a checkpoint was saved: {saved}. To resume{how}:\n  {_resume_command(args.argv)}"
    if (out / CHECKPOINT).exists():
        return (f"the last checkpoint, {out / CHECKPOINT}, is kept. To resume{how}:\n  "
                f"{_resume_command(args.argv)}")
    return (f"no checkpoint was written. To start again{how}:\n  "
            f"{_start_command(args.argv)}")


def cmd_evaluate(args):
    from .imagenet_train import describe_evaluation, evaluate_checkpoint, write_json
    from .train import CHECKPOINT
    if args.json:
        ckpt = Path(args.checkpoint)          # a run folder: only its checkpoint is read
        _output_file(args.json, [ckpt / CHECKPOINT if ckpt.is_dir() else ckpt, args.data_dir])
    result = evaluate_checkpoint(args.checkpoint, args.data_dir, split=args.split,
                                 patches=args.patches, batch_size=args.batch_size,
                                 workers=args.workers, devices=args.devices,
                                 progress=progress_bars(args))
    print(describe_evaluation(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")


def cmd_figures(args):
    from .imagenet_train import make_figures
    paths = make_figures(args.checkpoint, args.data_dir, args.output_dir, images=args.images,
                         neighbours=args.neighbours, max_train=args.max_train,
                         batch_size=args.batch_size, devices=args.devices, seed=args.seed,
                         progress=progress_bars(args), devkit=args.devkit)
    print(f"wrote {paths['figure3']} and {paths['figure4']}")


# ----------------------------------------------------------------------------- the parser

class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (not the None/False of options that are
    off or whose help says its default); the description kept as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _common(p, data_help=None, output=None, batch=None, workers=None, data_required=True):
    """The options every command spells alike (old spellings kept as aliases).

    output: (default, help) of --output-dir/-o; workers: (default, type, help) of
    --workers/-j; batch: the default of --batch-size/-b, or (None, help) for an option
    whose default is said in its help."""
    if data_help:
        p.add_argument("--data-dir", "--data", dest="data_dir", required=data_required,
                       metavar="DIR", help=data_help)
    if output:
        p.add_argument("--output-dir", "-o", "--out", dest="output_dir", default=output[0],
                       metavar="DIR", help=output[1])
    if isinstance(batch, tuple):
        p.add_argument("--batch-size", "-b", "--batch", dest="batch_size",
                       type=setting("batch_size"), default=None, metavar="N", help=batch[1])
    elif batch is not None:
        p.add_argument("--batch-size", "-b", "--batch", dest="batch_size", type=positive_int,
                       default=batch, metavar="N", help="images per batch")
    if workers:
        p.add_argument("--workers", "-j", "--jobs", dest="workers", default=workers[0],
                       type=workers[1], metavar="N", help=workers[2])
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")


def _processes(p, text):
    """--processes: training processes of figure1 and claims (not data-loading workers,
    which -j/--workers means elsewhere; -j, --workers and --jobs, their old spellings here,
    still work)."""
    p.add_argument("--processes", dest="processes", type=positive_int, default=None,
                   metavar="N", help=text)
    p.add_argument("-j", "--workers", "--jobs", dest="processes", type=positive_int,
                   help=argparse.SUPPRESS)


def build_parser():
    p = argparse.ArgumentParser(prog="alexnet", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add = lambda name, **kw: sub.add_parser(name, formatter_class=_Help, **kw)  # noqa: E731

    cifar_help = ("cifar-10-batches-py, a folder holding it or the archive, or the archive "
                  "itself (default: $ALEXNET_DATA or ./data)")
    f = add("figure1", help="Figure 1: ReLU vs tanh on CIFAR-10 (the main job)",
            description="Train the four-layer CIFAR-10 net with ReLU and with tanh (Section "
                        "3.1, Figure 1). Running the same command again resumes.")
    f.add_argument("--data-dir", default=None, help=cifar_help)
    _common(f, output=(None, "output folder (default: runs/figure1, or runs/figure1-quick "
                             "with --quick)"))
    _processes(f, "train the nets side by side in this many processes, the cores shared "
                  "out among them (default: one per core, at most one per net; 1: one after "
                  "the other)")
    f.add_argument("--quick", action="store_true", help="a short run on 5,000 images, 3 epochs")
    f.add_argument("--epochs", "--max-epochs", dest="max_epochs", type=positive_int,
                   default=None, help="bound on each net's epochs (default 60)")
    f.add_argument("--lr-relu", type=positive_float, default=None,
                   help="override the tuned ReLU rate (default 0.004)")
    f.add_argument("--lr-tanh", type=positive_float, default=None,
                   help="override the tuned tanh rate (default 0.016)")
    f.add_argument("--train-images", type=positive_int, default=None,
                   help="a balanced training subset (default: all 50,000)")
    f.add_argument("--activations", type=activations, default=None,
                   help="comma-separated subset of relu,tanh (e.g. to train them in two "
                        "processes; default both)")
    f.add_argument("--seed", type=count, default=None, help="random seed (default 0)")
    f.add_argument("--device", "--devices", dest="device", type=one_device, default="cpu",
                   help="where the nets train: cpu, or a GPU such as cuda:0 (then one after "
                        "the other)")
    f.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    f.add_argument("--allow-unofficial-archive", action="store_true",
                   help="accept a local archive whose MD5 is not the official one")
    f.add_argument("--restart", action="store_true",
                   help="discard the checkpoints in the output folder")
    f.add_argument("--report-only", action="store_true",
                   help="train nothing: plot and summarise the epochs finished so far")
    f.set_defaults(func=cmd_figure1)

    from .claims import claim_help
    c = add("claims", help="the paper's other claims (Sections 3-6) as CIFAR-10 experiments",
            description="Train the variants of each chosen claim (all by default) with the "
                        "same data order and seeds, and report each claim's numbers against "
                        "the paper's with a verdict (docs/claims.md). Running the same "
                        "command again continues; finished runs are kept.\n\nclaims:\n"
                        + claim_help())
    c.add_argument("names", nargs="*", metavar="NAME", help="claims to run (default: all)")
    c.add_argument("--data-dir", default=None, help=cifar_help)
    _common(c, output=(None, "output folder (default: runs/claims, or runs/claims-quick with "
                             "--quick)"))
    _processes(c, "train the runs side by side in this many processes, the cores shared out "
                  "among them (default: one per core; 1: one after the other)")
    c.add_argument("--quick", action="store_true",
                   help="600 images, 2 epochs: checks the machinery, not the claims")
    c.add_argument("--seeds", type=positive_int, default=2, help="seeds per variant")
    c.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs per run (default: 8 for the AlexNet runs, 12 for claim 1's net; longer schedules: docs/claims.md)")
    c.add_argument("--train-images", type=positive_int, default=None,
                   help="a balanced training subset (default 10,000)")
    c.add_argument("--device", "--devices", dest="device", type=one_device, default="cpu",
                   help="cpu, or a GPU such as cuda:0 (then one run after the other)")
    c.add_argument("--report-only", action="store_true",
                   help="train nothing: the table and plots from the finished runs")
    c.set_defaults(func=cmd_claims)

    w = add("figure1-sweep", help="the learning-rate sweep behind Figure 1's rates",
            description="Train each activation at each rate for a few epochs; the best rate "
                        "has the lowest training error at the end.")
    w.add_argument("--data-dir", default=None, help=cifar_help)
    _common(w, output=("runs/figure1-sweep", "output folder"))
    w.add_argument("--lrs", type=positive_floats, default=(0.002, 0.004, 0.008, 0.016, 0.032),
                   help="comma-separated learning rates to try")
    w.add_argument("--train-images", type=positive_int, default=50000,
                   help="a balanced training subset of this many images")
    w.add_argument("--epochs", type=positive_int, default=3, help="epochs per rate")
    w.add_argument("--activations", type=activations, default=("relu", "tanh"),
                   help="comma-separated subset of relu,tanh")
    w.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    w.add_argument("--allow-unofficial-archive", action="store_true",
                   help="accept a local archive whose MD5 is not the official one")
    w.set_defaults(func=cmd_figure1_sweep)

    i = add("inspect", help="step through the network on one image",
            description="Print every stage's output shape and statistics for one image.")
    i.add_argument("image", nargs="?", default=None,
                   help="any image Pillow reads (default: a built-in synthetic picture)")
    i.add_argument("--save-maps", default=None, metavar="DIR",
                   help="write each stage's activation maps as a titled PNG grid")
    i.add_argument("--columns", type=int, default=2, choices=(1, 2),
                   help="2: the paper's net; 1: Section 3.2's one-column net")
    i.add_argument("--devices", type=devices, default=None,
                   help="comma-separated, e.g. cpu:0,cpu:1 or cuda:0,cuda:1 (default: cpu)")
    i.add_argument("--checkpoint", default=None,
                   help="trained weights: a run folder of `alexnet train` or its checkpoint.npz "
                        "(default: a fresh Section 5 init)")
    i.add_argument("--seed", type=count, default=0, help="seed of the fresh init")
    i.set_defaults(func=cmd_inspect)

    r = add("prepare", help="ILSVRC -> the 256x256 uint8 cache, mean image, RGB PCA",
            description="Decode ILSVRC once into the cache the loader maps (Section 2). "
                        "Running the same command again resumes.")
    r.add_argument("src", nargs="?", help="a folder with train/ and val/ (WNID folders, or a "
                                          "flat val/ with the devkit), or with the official "
                                          "tars and the devkit")
    r.add_argument("out", nargs="?",
                   help="the cache folder (running again resumes an interrupted run)")
    r.add_argument("--verify", default=None, metavar="CACHE",
                   help="check a cache instead: every array against the counts, shapes, dtypes "
                        "and checksums of its manifest (alexnet prepare --verify CACHE); a cache "
                        "of an earlier version gets its checksums recorded")
    _common(r, workers=(None, count, "decoding processes (default: all CPUs; 0: decode here)"))
    r.add_argument("--splits", type=split_names, default=None,
                   help="comma-separated subset of train,val,test (default: train and val)")
    r.add_argument("--devkit", default=None, help="devkit folder or .tar.gz (default: found in SRC)")
    r.add_argument("--size", type=positive_int, default=256,
                   help="image side (256, Section 2; smaller for quick experiments)")
    r.add_argument("--chunk-size", type=positive_int, default=256,
                   help="images per unit of work and of resumption")
    r.add_argument("--max-chunks", type=positive_int, default=None,
                   help="stop after this many chunks per split (run again to go on)")
    r.add_argument("--exif-transpose", action="store_true",
                   help="apply EXIF orientation (default: ignored, as ImageNet tools did)")
    r.add_argument("--rebuild", action="store_true",
                   help="build the splits again even if OUT holds them finished (made from "
                        "another SRC or settings, or damaged); written beside the old cache "
                        "and moved into place once complete")
    r.set_defaults(func=cmd_prepare)

    t = add("train", help="train AlexNet on a prepared cache (Section 5)",
            description="Train AlexNet with Section 5's recipe. Interrupted, it resumes with "
                        "the same command plus --resume (or just --resume RUN): the run's "
                        "settings come from its checkpoint.")
    _common(t, data_help="the cache made by `alexnet prepare` (on --resume, default: the "
                         "run's)",
            output=("runs/alexnet", "run folder"), data_required=False,
            batch=(None, "images per batch (default 128, Section 5)"),
            workers=(2, count, "loader processes per loader (0: build batches here)"))
    t.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN",
                   help="continue a run exactly: the --output-dir's, or RUN (a run folder or "
                        "its checkpoint.npz), with the settings saved in it; --lr, --epochs "
                        "and logging options may change, the others given must match")
    t.add_argument("--devices", type=devices, default=None,
                   help="one per column: cuda:0,cuda:1 (the paper), cpu:0,cpu:1, or one for "
                        "both (default cpu; on --resume: the run's)")
    t.add_argument("--columns", type=int, default=None, choices=(1, 2),
                   help="2: Figure 2 (default); 1: Section 3.2's one-GPU net (half the conv "
                        "kernels)")
    t.add_argument("--lr", type=setting("lr"), default=None,
                   help="learning rate (default 0.01, Section 5; on --resume: the saved run's "
                        "current rate)")
    t.add_argument("--epochs", type=setting("epochs"), default=None,
                   help="epochs (default 90, Section 5)")
    t.add_argument("--schedule", default=None, choices=("plateau", "2012"),
                   help="plateau (default): /10 when val top-1 error stops improving, 3 times "
                        "at most; 2012: /10 at epochs 23, 51, 78")
    t.add_argument("--patience", type=setting("patience"), default=None,
                   help="plateau: epochs without improvement before dividing (default 3)")
    t.add_argument("--seed", type=setting("seed"), default=None,
                   help="init, dropout, data order (default 0)")
    t.add_argument("--no-pca-noise", action="store_true",
                   help="no PCA colour noise (Section 4.1): for a cache without pca.npz")
    t.add_argument("--eval-batch-size", "--eval-batch", dest="eval_batch_size",
                   type=positive_int, default=None, help="validation batch (default --batch-size)")
    t.add_argument("--checkpoint-minutes", type=positive_float, default=10.0,
                   help="also checkpoint every M minutes (always at the end of an epoch)")
    t.add_argument("--checkpoint-steps", type=count, default=0,
                   help="also every N steps (0: off)")
    t.add_argument("--input-size", type=setting("input_size"), default=None,
                   help="patch side (default 227, see model.py)")
    t.add_argument("--conv-channels", type=setting("conv_channels"), default=None,
                   help="a smaller net: kernels of conv1..conv5, e.g. 8,12,16,12,8")
    t.add_argument("--fc-features", type=setting("fc_features"), default=None,
                   help="a smaller net: fc6/fc7 width (default 4096)")
    t.add_argument("--weight-std", type=setting("weight_std"), default=None,
                   help="init std (default 0.01, Section 5; small nets need more, e.g. 0.1)")
    t.set_defaults(func=cmd_train)

    e = add("evaluate", help="top-1/top-5 error, centre patch and 10-patch average",
            description="Top-1 and top-5 error of a trained net (Sections 4.1 and 6).")
    e.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    _common(e, data_help="the cache (its classes must be the net's)", batch=128,
            workers=(2, count, "loader processes (0: build batches here)"))
    e.add_argument("--split", default="val", choices=("train", "val", "test"),
                   help="the cache split to score")
    e.add_argument("--patches", default="both", choices=("1", "10", "both"),
                   help="1: centre patch; 10: the 10-patch average (Section 4.1); both (one pass)")
    e.add_argument("--devices", type=devices, default=None,
                   help="default: the training devices, or the CPU")
    e.add_argument("--json", default=None,
                   help="also write the result to this .json file (never over an input)")
    e.set_defaults(func=cmd_evaluate)

    g = add("figures", help="Figures 3 (conv1 kernels) and 4 (top-5, neighbours)",
            description="Figures 3 and 4 of Section 6.1 for a trained net.")
    g.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    _common(g, data_help="the cache (its classes must be the net's)",
            output=(None, "folder for the PNGs (default: the checkpoint's)"), batch=64)
    g.add_argument("--images", type=positive_int, default=5, help="validation images in Figure 4")
    g.add_argument("--neighbours", type=positive_int, default=6, help="training images per row")
    g.add_argument("--max-train", type=positive_int, default=2000,
                   help="training images searched for neighbours (a seeded random subset)")
    g.add_argument("--devkit", default=None,
                   help="ILSVRC devkit (folder or .tar.gz) for class names (default: the "
                        "cache's, else the shipped ILSVRC-2012 list)")
    g.add_argument("--devices", type=devices, default=None,
                   help="default: the training devices, or the CPU")
    g.add_argument("--seed", type=count, default=0, help="which validation images")
    g.set_defaults(func=cmd_figures)
    return p


_RESUMABLE = {"figure1": "the last checkpoints are kept; to resume, run the same command again",
              "figure1-sweep": "run the same command again to start the sweep over",
              "claims": "finished runs and the last checkpoints are kept; to continue, run "
                        "the same command again",
              "prepare": "finished chunks are kept; to resume, run the same command again"}


def main(argv=None):
    from . import stopping
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command != "train":
        from .distributed import launched_by_mpi, world
        if launched_by_mpi() and world().size > 1:   # each process would do the same work
            print(f"alexnet {args.command}: error: only `alexnet train` runs over several "
                  f"processes; start `alexnet {args.command}` without mpiexec", file=sys.stderr)
            return 1
    try:
        with stopping.signals():     # Ctrl-C and SIGTERM (a scheduler's stop) alike
            return args.func(args) or 0
    except KeyboardInterrupt as e:
        status = stopping.exit_status(e)
        if getattr(e, "together", False):
            from .distributed import world
            if not world().is_root:       # every rank stopped; rank 0 tells the user
                return status
        if args.command == "train":
            hint = _train_hint(args, getattr(e, "saved", None))
        else:
            hint = _RESUMABLE.get(args.command, "nothing was written")
        print(f"\nalexnet {args.command}: interrupted by {getattr(e, 'name', 'SIGINT')}; {hint}",
              file=sys.stderr)
        return status
    except (ValueError, RuntimeError, KeyError) as e:
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # FileNotFoundError, a read-only or full disk, a file where a folder goes
        what = e if e.filename is None or str(e.filename) in str(e) else f"{e} ({e.filename})"
        print(f"alexnet {args.command}: error: {what}", file=sys.stderr)
        if type(e) in (PermissionError, IsADirectoryError, NotADirectoryError) or e.errno == 28:
            print("  check that the path is a folder you may write to, on a disk with free "
                  "space, or choose another one", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
