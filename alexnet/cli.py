"""The `alexnet` command: argparse subcommands that call the library (no logic here).

    alexnet figure1   [--data-dir D] [--out DIR] [--quick]      Figure 1: ReLU vs tanh on CIFAR-10
    alexnet inspect   [IMAGE] [--save-maps DIR]                 every layer's output for one image
    alexnet prepare   SRC OUT                                   ImageNet -> 256x256 cache (Section 2)
    alexnet train     --data CACHE [--out DIR] [--resume]       the paper's recipe (Section 5)
    alexnet evaluate  CKPT --data CACHE                         top-1/top-5, centre and 10 patches
    alexnet figures   CKPT --data CACHE                         Figures 3 and 4
"""
from __future__ import annotations

import argparse
import sys


def cmd_figure1(args):
    from .experiments import Figure1Config, describe, figure1
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
    summary = figure1(args.data_dir, args.out, quick=args.quick, config=cfg,
                      download=not args.no_download, progress=not args.no_progress,
                      restart=args.restart)
    print(describe(summary))
    print(f"wrote {args.out}/figure1.png, figure1.csv, figure1.json")


def cmd_figure1_sweep(args):
    from .experiments import figure1_sweep
    lrs = tuple(float(v) for v in args.lrs.split(","))
    summary = figure1_sweep(args.data_dir, args.out, lrs=lrs, train_images=args.train_images,
                            epochs=args.epochs, download=not args.no_download,
                            progress=not args.no_progress)
    print("best learning rates:", summary["best"])


def cmd_inspect(args):
    from .inspection import inspect_image
    devices = tuple(args.devices.split(",")) if args.devices else None
    inspect_image(args.image, columns=args.columns, devices=devices, save_maps=args.save_maps,
                  checkpoint=args.checkpoint, seed=args.seed)


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
    f.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    f.add_argument("--no-progress", action="store_true", help="a line per epoch, no bars")
    f.add_argument("--restart", action="store_true", help="discard checkpoints in --out")
    f.set_defaults(func=cmd_figure1)

    w = sub.add_parser("figure1-sweep", help="the learning-rate sweep behind Figure 1's rates")
    w.add_argument("--data-dir", default=None)
    w.add_argument("--out", default="runs/figure1-sweep")
    w.add_argument("--lrs", default="0.0005,0.001,0.002,0.004,0.008")
    w.add_argument("--train-images", type=int, default=10000)
    w.add_argument("--epochs", type=int, default=3)
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
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
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
