"""The `alexnet` command: argparse subcommands that call the library (no logic here).

    alexnet figure1   [--data-dir D] [--out DIR] [--quick]      Figure 1: ReLU vs tanh on CIFAR-10
    alexnet inspect   [IMAGE] [--save-maps DIR]                 every layer's output for one image
    alexnet prepare   SRC OUT [--workers N]                     ImageNet -> 256x256 cache (Section 2)
    alexnet train     --data CACHE [--out DIR] [--resume]       the paper's recipe (Section 5)
                      [--devices cuda:0,cuda:1] [--columns 2] [--schedule plateau|2012]
    alexnet evaluate  CKPT --data CACHE [--patches both]        top-1/top-5, centre and 10 patches
    alexnet figures   CKPT --data CACHE [--out DIR]             Figures 3 and 4 (Section 6.1)
"""
from __future__ import annotations

import argparse
import sys


def cmd_figure1(args):
    from .experiments import Figure1Config, available_cores, describe, figure1
    cfg = Figure1Config()
    overrides = {}
    if args.max_epochs:
        overrides["max_epochs"] = args.max_epochs
    if args.lr_relu or args.lr_tanh:
        lr = dict(cfg.lr)
        lr.update({k: v for k, v in (("relu", args.lr_relu), ("tanh", args.lr_tanh)) if v})
        overrides["lr"] = tuple(sorted(lr.items()))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.train_images:
        overrides["train_images"] = args.train_images
    if args.activations:
        overrides["activations"] = tuple(args.activations.split(","))
    from dataclasses import replace
    cfg = replace(cfg, **overrides)
    from .data.cifar10 import CIFAR10NotFound
    try:
        summary = figure1(args.data_dir, args.out, quick=args.quick, config=cfg,
                          download=not args.no_download, progress=not args.no_progress,
                          restart=args.restart, report_only=args.report_only,
                          jobs=args.jobs if args.jobs is not None else available_cores())
    except CIFAR10NotFound as e:
        raise FileNotFoundError(f"{e}\nFrom the command line: --data-dir D names the place "
                                "(a folder, the archive, or cifar-10-batches-py); the "
                                "download runs unless --no-download.") from e
    print(describe(summary))
    print(f"wrote {args.out}/figure1.png, figure1.csv, figure1.json")


def cmd_figure1_sweep(args):
    from .experiments import figure1_sweep
    lrs = tuple(float(v) for v in args.lrs.split(","))
    summary = figure1_sweep(args.data_dir, args.out, lrs=lrs, train_images=args.train_images,
                            activations=tuple(args.activations.split(",")),
                            epochs=args.epochs, download=not args.no_download,
                            progress=not args.no_progress)
    print("best learning rates:", summary["best"])


def cmd_inspect(args):
    from .inspection import inspect_image
    devices = tuple(args.devices.split(",")) if args.devices else None
    inspect_image(args.image, columns=args.columns, devices=devices, save_maps=args.save_maps,
                  checkpoint=args.checkpoint, seed=args.seed)


def cmd_prepare(args):
    from .data.prepare import prepare
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    manifest = prepare(args.src, args.out, workers=args.workers, splits=splits, size=args.size,
                       chunk_size=args.chunk_size, devkit=args.devkit,
                       exif_transpose=args.exif_transpose, progress=not args.no_progress,
                       max_chunks=args.max_chunks)
    for name, entry in manifest["splits"].items():
        state = "complete" if entry["complete"] else "INCOMPLETE (run the command again)"
        print(f"{name}: {entry['valid']} images, {entry['skipped']} skipped, {state}")
    print(f"{len(manifest.get('wnids', []))} classes; cache in {args.out} "
          f"(skipped files: {args.out}/report.json)")


def _ints(text):
    return tuple(int(v) for v in text.split(",")) if text else None


def cmd_train(args):
    from .distributed import world
    from .imagenet_train import Recipe, train_imagenet
    recipe = Recipe(batch_size=args.batch, lr=args.lr, epochs=args.epochs, schedule=args.schedule,
                    patience=args.patience, seed=args.seed)
    comm = world()                  # under mpiexec: one of several processes
    with comm.abort_on_error("alexnet train"):
        history = train_imagenet(args.data, args.out, recipe, columns=args.columns,
                                 devices=args.devices, input_size=args.input_size,
                                 conv_channels=_ints(args.conv_channels),
                                 fc_features=args.fc_features, weight_std=args.weight_std,
                                 resume=args.resume, workers=args.workers,
                                 eval_batch_size=args.eval_batch,
                                 checkpoint_minutes=args.checkpoint_minutes,
                                 checkpoint_steps=args.checkpoint_steps,
                                 progress=not args.no_progress)
    if not comm.is_root:
        return 0
    if history:
        last = history[-1]
        print(f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}, val top-1 "
              f"{last.get('val_top1', float('nan')):.4f}, top-5 {last.get('val_top5', float('nan')):.4f}")
    print(f"wrote {args.out}/checkpoint.npz, metrics.jsonl, training.png")


def cmd_evaluate(args):
    from .imagenet_train import describe_evaluation, evaluate_checkpoint, write_json
    result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split,
                                 patches=args.patches, batch_size=args.batch,
                                 workers=args.workers, devices=args.devices,
                                 progress=not args.no_progress)
    print(describe_evaluation(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")


def cmd_figures(args):
    from .imagenet_train import make_figures
    paths = make_figures(args.checkpoint, args.data, args.out, images=args.images,
                         neighbours=args.neighbours, max_train=args.max_train,
                         batch_size=args.batch, devices=args.devices, seed=args.seed,
                         progress=not args.no_progress)
    print(f"wrote {paths['figure3']} and {paths['figure4']}")


def build_parser():
    p = argparse.ArgumentParser(prog="alexnet", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    f = sub.add_parser("figure1", help="Figure 1: ReLU vs tanh on CIFAR-10 (the main job)")
    f.add_argument("--data-dir", default=None,
                   help="cifar-10-batches-py, a folder holding it or the archive, or the archive "
                        "itself (default: $ALEXNET_DATA or ./data)")
    f.add_argument("--out", default="runs/figure1", help="output folder (default runs/figure1)")
    f.add_argument("--quick", action="store_true", help="a short run on 5,000 images, 3 epochs")
    f.add_argument("--max-epochs", type=int, default=None, help="bound on each net's epochs")
    f.add_argument("--lr-relu", type=float, default=None, help="override the tuned ReLU rate")
    f.add_argument("--lr-tanh", type=float, default=None, help="override the tuned tanh rate")
    f.add_argument("--train-images", type=int, default=None, help="a balanced training subset")
    f.add_argument("--activations", default=None,
                   help="comma-separated subset of relu,tanh (e.g. to train them in two processes)")
    f.add_argument("--seed", type=int, default=None)
    f.add_argument("--jobs", type=int, default=None,
                   help="train the nets side by side in this many processes, the cores shared "
                        "out among them (default: one per core, at most one per net; 1: one "
                        "after the other)")
    f.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    f.add_argument("--no-progress", action="store_true", help="a line per epoch, no bars")
    f.add_argument("--restart", action="store_true", help="discard checkpoints in --out")
    f.add_argument("--report-only", action="store_true",
                   help="train nothing: plot and summarise the epochs finished so far in --out")
    f.set_defaults(func=cmd_figure1)

    w = sub.add_parser("figure1-sweep", help="the learning-rate sweep behind Figure 1's rates")
    w.add_argument("--data-dir", default=None)
    w.add_argument("--out", default="runs/figure1-sweep")
    w.add_argument("--lrs", default="0.002,0.004,0.008,0.016,0.032")
    w.add_argument("--train-images", type=int, default=50000)
    w.add_argument("--epochs", type=int, default=3)
    w.add_argument("--activations", default="relu,tanh")
    w.add_argument("--no-download", action="store_true")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_figure1_sweep)

    i = sub.add_parser("inspect", help="step through the network on one image")
    i.add_argument("image", nargs="?", default=None,
                   help="any image Pillow reads (default: a built-in synthetic picture)")
    i.add_argument("--save-maps", default=None, metavar="DIR",
                   help="write each layer's activation maps as PNG grids")
    i.add_argument("--columns", type=int, default=2, choices=(1, 2))
    i.add_argument("--devices", default=None, help="comma-separated, e.g. cpu:0,cpu:1 or cuda:0,cuda:1")
    i.add_argument("--checkpoint", default=None, help="trained weights (a checkpoint.npz)")
    i.add_argument("--seed", type=int, default=0)
    i.set_defaults(func=cmd_inspect)

    r = sub.add_parser("prepare", help="ILSVRC -> the 256x256 uint8 cache, mean image, RGB PCA")
    r.add_argument("src", help="a folder with train/ and val/ (WNID folders, or a flat val/ with "
                               "the devkit), or with the official tars and the devkit")
    r.add_argument("out", help="the cache folder (running again resumes an interrupted run)")
    r.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")
    r.add_argument("--splits", default="train,val", help="comma-separated (default train,val)")
    r.add_argument("--devkit", default=None, help="devkit folder or .tar.gz (default: found in SRC)")
    r.add_argument("--size", type=int, default=256, help="image side (256, Section 2; smaller "
                                                         "for quick experiments)")
    r.add_argument("--chunk-size", type=int, default=256, help="images per unit of work/resumption")
    r.add_argument("--max-chunks", type=int, default=None,
                   help="stop after this many chunks per split (a partial run; run again to go on)")
    r.add_argument("--exif-transpose", action="store_true",
                   help="apply EXIF orientation (default: ignored, as ImageNet tools did)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train AlexNet on a prepared cache (Section 5)")
    t.add_argument("--data", required=True, help="the cache made by `alexnet prepare`")
    t.add_argument("--out", default="runs/alexnet", help="run folder (default runs/alexnet)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    t.add_argument("--devices", default="cpu",
                   help="one per column: cuda:0,cuda:1 (the paper), cpu:0,cpu:1, or one for both")
    t.add_argument("--columns", type=int, default=2, choices=(1, 2),
                   help="2: Figure 2; 1: Section 3.2's one-GPU net (half the conv kernels)")
    t.add_argument("--batch", type=int, default=128, help="batch size (128)")
    t.add_argument("--lr", type=float, default=0.01, help="initial learning rate (0.01)")
    t.add_argument("--epochs", type=int, default=90, help="epochs (90)")
    t.add_argument("--schedule", default="plateau", choices=("plateau", "2012"),
                   help="plateau: /10 when val top-1 stops improving, 3 times at most; "
                        "2012: /10 at epochs 23, 51, 78")
    t.add_argument("--patience", type=int, default=3,
                   help="plateau: epochs without improvement before dividing (3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=2, help="loader processes (per loader)")
    t.add_argument("--eval-batch", type=int, default=None, help="validation batch (default --batch)")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also checkpoint every M minutes (always at the end of an epoch)")
    t.add_argument("--checkpoint-steps", type=int, default=0, help="also every N steps (0: off)")
    t.add_argument("--input-size", type=int, default=227, help="patch side (227; see model.py)")
    t.add_argument("--conv-channels", default=None,
                   help="a smaller net: kernels of conv1..conv5, e.g. 8,12,16,12,8")
    t.add_argument("--fc-features", type=int, default=None, help="a smaller net: fc6/fc7 width")
    t.add_argument("--weight-std", type=float, default=None,
                   help="init std (default 0.01, Section 5; small nets need more, e.g. 0.1)")
    t.add_argument("--no-progress", action="store_true", help="a line per epoch, no bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="top-1/top-5 error, centre patch and 10-patch average")
    e.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    e.add_argument("--data", required=True, help="the cache (its classes must be the net's)")
    e.add_argument("--split", default="val")
    e.add_argument("--patches", default="both", choices=("1", "10", "both"),
                   help="1: centre patch; 10: the 10-patch average (Section 4.1); both (one pass)")
    e.add_argument("--batch", type=int, default=128, help="network inputs per batch")
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--devices", default=None, help="default: the training devices, or the CPU")
    e.add_argument("--json", default=None, help="also write the result here")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("figures", help="Figures 3 (conv1 kernels) and 4 (top-5, neighbours)")
    g.add_argument("checkpoint", help="a run folder or its checkpoint.npz")
    g.add_argument("--data", required=True, help="the cache (its classes must be the net's)")
    g.add_argument("--out", default=None, help="folder for the PNGs (default: the checkpoint's)")
    g.add_argument("--images", type=int, default=5, help="validation images in Figure 4")
    g.add_argument("--neighbours", type=int, default=6, help="training images per row")
    g.add_argument("--max-train", type=int, default=2000,
                   help="training images searched for neighbours (a seeded random subset)")
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--devices", default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=cmd_figures)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command != "train":
        from .distributed import launched_by_mpi, world
        if launched_by_mpi() and world().size > 1:   # each process would do the same work
            print(f"alexnet {args.command}: error: only `alexnet train` runs over several "
                  f"processes; start `alexnet {args.command}` without mpiexec", file=sys.stderr)
            return 1
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is kept; run the same command to resume",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
