"""R ranks on one machine against one process: `alexnet train` end to end, as a user runs it.

The commands are docs/howto_distributed.md's, with a user's defaults (no MINIDL_*
or BLAS thread variables): `python -m alexnet train ...` and `mpiexec -n R python
-m alexnet train ...`, on the same synthetic cache (made by `alexnet prepare`),
in alternation (one process, R ranks, R ranks, one process, ...: a burst of load
from other processes, or a drift, hits both alike). Per net and command: the
median over rounds of the training speed (images per second over the epochs
after the first, whose time includes starting the loader workers; from
metrics.jsonl) and of the whole command's wall time (start-up and evaluation
included); then R ranks / one process.

    python -m benchmarks.bench_ranks                          # tiny and mid nets, 2 ranks
    python -m benchmarks.bench_ranks --nets paper --rounds 2  # the paper's net (minutes a run)

Nets: "tiny" is the tests' net (8-16 kernels, 67x67 patches, batch 16), whose
step is mostly Python overhead, the same on every rank; "mid" has half the
paper's kernels in every layer, fc layers of 1024 and 131x131 patches (batch 64);
"paper" is Section 5's net and batch (227x227 patches, batch 128).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import report

ROOT = Path(__file__).resolve().parent.parent

# name: (cache side, images per class (train, val), `alexnet train` options)
NETS = {
    "tiny": (76, (128, 8), ["--input-size", "67", "--conv-channels", "8,12,16,12,8",
                            "--fc-features", "64", "--weight-std", "0.1", "--batch-size", "16"]),
    "mid": (144, (64, 8), ["--input-size", "131", "--conv-channels", "48,128,192,192,128",
                           "--fc-features", "1024", "--weight-std", "0.02", "--lr", "0.001",
                           "--batch-size", "64"]),
    "paper": (256, (64, 4), ["--batch-size", "128"]),
}
CLASSES = 4


def make_cache(root, side, train, val):
    """A cache of CLASSES classes of noisy coloured pictures, made by `alexnet prepare`."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for k in range(CLASSES):
            folder = root / "src" / split / f"n0{k + 1}000000"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.normal(60 * k + 30, 50, (side + 20, side + 40, 3))
                Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
                    folder / f"{k}_{i}.JPEG", quality=85)
    subprocess.run([sys.executable, "-m", "alexnet", "prepare", str(root / "src"),
                    str(root / "cache"), "--size", str(side), "--no-progress"],
                   check=True, cwd=ROOT, env=user_environment(), capture_output=True)
    return root / "cache"


def user_environment():
    """A user's defaults: no MINIDL_* and no BLAS thread counts."""
    from alexnet.distributed import BLAS_VARIABLES, LAUNCHER_ENV
    drop = (*BLAS_VARIABLES, *LAUNCHER_ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MINIDL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env


def run_once(command, out):
    """(training images per second after the first epoch, wall seconds) of one command."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = subprocess.run([*command, "--output-dir", str(out)], cwd=ROOT, env=user_environment(),
                          capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    later = records[1:] or records
    images = sum(r["images_per_s"] * r["seconds"] for r in later)
    return images / sum(r["seconds"] for r in later), wall


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="runs of each command, alternated")
    p.add_argument("--nets", default="tiny,mid", help="comma-separated: tiny, mid, paper")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first not timed)")
    p.add_argument("--name", default="bench_ranks", help="results/NAME.json")
    args = p.parse_args(argv)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if not mpiexec:
        sys.exit("bench_ranks: no mpiexec; install the MPI extra: pip install -e \".[mpi]\"")
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    rows, samples = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for net in nets:
            side, (train, val), options = NETS[net]
            cache = make_cache(tmp / net, side, train, val)
            base = ["-m", "alexnet", "train", "--data-dir", str(cache), "--epochs",
                    str(args.epochs), "--no-progress", *options]
            commands = {"one process": [sys.executable, *base],
                        f"{args.ranks} ranks": [mpiexec, "-n", str(args.ranks),
                                                sys.executable, *base]}
            got = {name: [] for name in commands}
            load = [os.getloadavg()[0]]                 # the machine is shared: say how busy
            for r in range(args.rounds):
                order = list(commands) if r % 2 == 0 else list(commands)[::-1]
                for name in order:
                    speed, wall = run_once(commands[name], tmp / net / "run")
                    got[name].append((speed, wall))
                    samples.append({"net": net, "round": r, "command": name,
                                    "images_per_s": speed, "wall_s": wall})
                    print(f"{net} round {r} {name}: {speed:.1f} img/s, {wall:.1f} s", flush=True)
                load.append(os.getloadavg()[0])
            med = {name: (float(np.median([s for s, _ in v])), float(np.median([w for _, w in v])))
                   for name, v in got.items()}
            (one_speed, one_wall), (many_speed, many_wall) = (med[name] for name in commands)
            rows.append({"net": net, "batch": int(options[options.index("--batch-size") + 1]),
                         "ranks": args.ranks, "one_process_img_s": one_speed,
                         "ranks_img_s": many_speed, "speed_ratio": many_speed / one_speed,
                         "one_process_wall_s": one_wall, "ranks_wall_s": many_wall,
                         "wall_ratio": many_wall / one_wall, "rounds": args.rounds,
                         "load_average": float(np.median(load))})
    notes = (f"medians of {args.rounds} alternated runs of each command, {args.epochs} epochs "
             f"each (speed: epochs 2 on); speed_ratio > 1: the ranks are faster; wall_ratio "
             f"< 1: the ranks' whole command is shorter; load_average: the machine's 1-minute "
             f"load during the runs (other processes included; above the core count, the "
             f"ranks wait for each other once per step, and a tiny net's short steps suffer "
             f"most); defaults: each rank has cores // ranks threads for minidl and for the "
             f"BLAS, and --workers 2 loader processes")
    report(args.name, rows, notes=notes)
    path = Path(__file__).resolve().parent / "results" / f"{args.name}.json"
    data = json.loads(path.read_text())
    data["samples"] = samples
    path.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
