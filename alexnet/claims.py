"""The paper's claims of Sections 3 to 6 as experiments on CIFAR-10 (docs/claims.md).

Each claim is one experiment: a few variants of one recipe that differ only in
what the claim names (a test builds each pair and compares them), trained with
the same data order and seeds, several seeds each. Two nets:

- "alexnet": the paper's two-column net at CIFAR-10's scale
  (`alexnet.model.CIFAR_ALEXNET`), with Section 4's augmentation (random 24x24
  patches of the 32x32 images and their reflections, PCA colour noise), dropout
  and Section 5's SGD. Claims 2 to 7 are variants of this one recipe, so the
  baseline is trained once per seed and shared by every claim that compares to it.
- "conv-local": cuda-convnet's four-layer net with locally connected layers
  (`alexnet.model.ConvLocalNet`), with and without its normalization layers
  (claim 1, Section 3.3's CIFAR-10 numbers), with cuda-convnet's per-layer rates.

Every run is a run of the experiment runner (alexnet/runner.py): a folder under
OUT/runs/<recipe>/seed<k>, a checkpoint each epoch, kept once finished, so the
same command continues after Ctrl-C or a kill and never trains a finished run
again. The verdict rule is fixed in advance (docs/claims.md, `verdict`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import minidl
from minidl import optim

from .data import cifar10
from .data.augment import eval_batch, pca_shifts, train_batch
from .data.prepare import rgb_pca
from .evaluate import evaluate, evaluate_ten
from .model import CIFAR_ALEXNET, AlexNet, ConvLocalConfig, ConvLocalNet
from .runner import Run, run_all, shared
from .train import TrainConfig, Trainer, TrainingDiverged, read_metrics


# ----------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """Everything one training run depends on (its folder name is a hash of it)."""
    net: str = "alexnet"         # "alexnet" (CIFAR_ALEXNET) or "conv-local" (ConvLocalNet)
    # the model: what claims 1, 2, 3 and 5 change
    lrn: bool = True             # Sec 3.3
    pool_kernel: int = 3         # Sec 3.4: z = 3, s = 2 (overlapping) or z = 2
    dropout: float = 0.5         # Sec 4.2
    columns: int = 2             # Sec 3.2 (1: half the kernels in conv1-4, conv5 and fc kept)
    # the data: claim 4
    crops: bool = True           # Sec 4.1a: random 24x24 patches + reflections (else the centre)
    pca: bool = True             # Sec 4.1b: PCA colour noise, std 0.1
    # learning (Section 5): claim 6
    weight_decay: float = 0.0005
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 12
    train_images: int = 10000    # a class-balanced subset of the 50,000
    test_images: int = 10000
    crop: int = 24

    def key(self) -> str:
        """A short name that changes whenever anything in the recipe does."""
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.net}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


# The default recipes, scaled to fit the default set on a 2-core CPU in under 2.5 hours
# (docs/claims.md says what each scales down). The conv-local recipe keeps cuda-convnet's
# learning rates (epsW 0.001, epsB 0.002, momentum 0.9, decay 0.004 on the top three
# layers) and data (24x24 crops and flips, no colour noise, no dropout).
ALEXNET = Recipe(epochs=8)
CONV_LOCAL = Recipe(net="conv-local", lrn=True, dropout=0.0, pca=False, weight_decay=0.004,
                    lr=0.001, epochs=12)

QUICK = dict(epochs=2, train_images=600, test_images=300)     # --quick: the machinery only


@dataclass(frozen=True)
class Comparison:
    """One number of a claim: `metric` of `variant` against `baseline`, and the sign of
    (variant - baseline) that the paper's text predicts (+1: the variant is higher)."""
    baseline: str
    variant: str
    metric: str                  # a key of `measure`'s result
    expected_sign: int
    paper: str                   # the paper's number or words for this difference


@dataclass(frozen=True)
class Claim:
    name: str
    section: str
    says: str                    # the paper's words
    variants: dict               # variant name -> Recipe changes from the base recipe
    comparisons: tuple
    base: Recipe = ALEXNET
    scaled: str = ""             # what the experiment scales down from the paper

    def recipes(self, base: Recipe) -> dict:
        return {v: replace(base, **changes) for v, changes in self.variants.items()}


CLAIMS = {c.name: c for c in [
    Claim("lrn", "3.3", "response normalization reduces our top-1 and top-5 error rates by "
          "1.4% and 1.2%; on CIFAR-10 a four-layer CNN achieved a 13% test error rate without "
          "normalization and 11% with normalization",
          {"with LRN": {}, "without LRN": {"lrn": False}},
          (Comparison("with LRN", "without LRN", "test_error", +1, "13% vs 11% (+2.0 points)"),),
          base=CONV_LOCAL,
          scaled="cuda-convnet's 11pct/13pct nets, its rates and data; a subset of the "
                 "training images and a few epochs instead of ~470 epochs on 50,000"),
    Claim("overlap", "3.4", "overlapping pooling (z=3, s=2) reduces the top-1 and top-5 error "
          "rates by 0.4% and 0.3% ... slightly more difficult to overfit",
          {"z=3, s=2": {}, "z=2, s=2": {"pool_kernel": 2}},
          (Comparison("z=3, s=2", "z=2, s=2", "test_error", +1, "+0.4 points top-1"),
           Comparison("z=3, s=2", "z=2, s=2", "overfit_gap", +1, "slightly more overfitting")),
          scaled="the CIFAR-sized two-column net instead of ImageNet"),
    Claim("dropout", "4.2", "without dropout, our network exhibits substantial overfitting. "
          "Dropout roughly doubles the number of iterations required to converge",
          {"dropout 0.5": {}, "no dropout": {"dropout": 0.0}},
          (Comparison("dropout 0.5", "no dropout", "overfit_gap", +1, "substantial overfitting"),
           Comparison("dropout 0.5", "no dropout", "test_error", +1, "(implied: higher)"),
           Comparison("dropout 0.5", "no dropout", "epochs_to_train_error", -1,
                      "about half the iterations")),
          scaled="the CIFAR-sized net, fc6/fc7 of 256 units instead of 4096"),
    Claim("augment", "4.1", "without this scheme [crops and reflections], our network suffers "
          "from substantial overfitting ... [PCA colour noise] reduces the top-1 error rate "
          "by over 1%",
          {"crops+flips+PCA": {}, "crops+flips": {"pca": False},
           "none": {"crops": False, "pca": False}},
          (Comparison("crops+flips", "none", "overfit_gap", +1, "substantial overfitting"),
           Comparison("crops+flips", "none", "test_error", +1, "(implied: higher)"),
           Comparison("crops+flips+PCA", "crops+flips", "test_error", +1,
                      "over +1 point top-1")),
          scaled="24x24 patches of 32x32 images (ImageNet: 224 of 256); without crops the "
                 "net sees the centre patch"),
    Claim("columns", "3.2", "the two-GPU net takes slightly less time to train than the "
          "one-GPU net ... reduces our top-1 and top-5 error rates by 1.7% and 1.2%",
          {"two columns": {}, "one column": {"columns": 1}},
          (Comparison("two columns", "one column", "test_error", +1, "+1.7 points top-1"),),
          scaled="the CIFAR-sized net; both columns on one CPU"),
    Claim("weight-decay", "5", "this small amount of weight decay ... is not merely a "
          "regularizer: it reduces the model's training error",
          {"decay 0.0005": {}, "no decay": {"weight_decay": 0.0}},
          (Comparison("decay 0.0005", "no decay", "train_error", +1, "higher training error"),
           Comparison("decay 0.0005", "no decay", "test_error", +1, "(implied: higher)")),
          scaled="the CIFAR-sized net, a few epochs (the paper: 90)"),
    Claim("ten-patch", "6", "averaging the predictions of ten patches: 37.5% top-1 against "
          "39.0% with the centre patch alone",
          {"10 patches": {}},
          (Comparison("10 patches", "10 patches", "centre_minus_ten", -1,
                      "-1.5 points top-1 (39.0% -> 37.5%)"),),
          scaled="the CIFAR-sized net's test set; the same trained nets, two ways of testing"),
]}


def claim_help() -> str:
    """One line per claim, for --help."""
    return "\n".join(f"  {c.name:<13} Sec. {c.section}: " + _first_words(c.says)
                     for c in CLAIMS.values())


def _first_words(text, n=70):
    return text if len(text) <= n else text[:n - 3].rsplit(" ", 1)[0] + " ..."


# ----------------------------------------------------------------------------- data
class CifarPatches:
    """Training batches of 24x24 patches of CIFAR-10 (Section 4.1 at CIFAR's scale).

    The order of an epoch is ``default_rng([seed, epoch]).permutation(N)`` and the
    crops, flips and colour draws of batch i come from ``default_rng([seed, epoch, i])``:
    every variant of a claim sees the same images in the same order, and a resumed
    run the same batches. ``crops=False`` gives the centre patch, unflipped.
    """

    def __init__(self, images, labels, mean, size, batch_size, seed, crops=True, pca=None):
        self.images, self.labels = images, np.asarray(labels, np.int64)   # (N, 32, 32, 3) uint8
        self.mean, self.size, self.batch_size, self.seed = mean, size, batch_size, seed
        self.crops, self.pca = crops, pca

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, epoch, start=0):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
        for i in range(start, len(self)):
            rows = np.sort(order[i * self.batch_size:(i + 1) * self.batch_size])
            rng = np.random.default_rng([self.seed, epoch, i])
            eigvecs, eigvals = self.pca if self.pca is not None else (None, None)
            if self.crops:
                x = train_batch(self.images, rows, self.size, rng, self.mean, eigvecs, eigvals)
            else:
                x = eval_batch(self.images, rows, self.size, self.mean)
                if self.pca is not None:
                    shifts = pca_shifts(rng.normal(0.0, 0.1, (len(rows), 3)), eigvecs, eigvals)
                    x += shifts.astype(np.float32)[:, :, None, None]
            yield x, self.labels[rows]


class CifarTest:
    """Test batches: the centre patch, or with ten=True the 10 patches (N, 10, 3, S, S)."""

    def __init__(self, images, labels, mean, size, batch_size=500, ten=False):
        self.images, self.labels = images, np.asarray(labels, np.int64)
        self.mean, self.size, self.batch_size, self.ten = mean, size, batch_size, ten

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        for a in range(0, len(self.labels), self.batch_size):
            rows = np.arange(a, min(a + self.batch_size, len(self.labels)))
            yield eval_batch(self.images, rows, self.size, self.mean, ten=self.ten), self.labels[rows]


@functools.lru_cache(maxsize=2)
def load_data(data_dir, train_images, test_images, seed=0):
    """CIFAR-10 as NHWC uint8 (what the augmentation code reads), a balanced training
    subset (the same for every seed: the seeds vary the net and the order, not the data),
    its mean image (32, 32, 3) and its RGB PCA (eigvecs, eigvals in pixel/255 units)."""
    data = cifar10.load_cifar10(data_dir, download=False)
    if train_images < len(data.y_train) or test_images < len(data.y_test):
        data = data.subset(train_images, n_test=test_images if test_images < len(data.y_test)
                           else None, seed=seed)
    x_train = np.ascontiguousarray(data.x_train.transpose(0, 2, 3, 1))    # (N, 32, 32, 3)
    x_test = np.ascontiguousarray(data.x_test.transpose(0, 2, 3, 1))
    mean = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)      # (32, 32, 3)
    pixels = x_train.reshape(-1, 3).astype(np.float64)
    eigvals, eigvecs, _, _ = rgb_pca(pixels.sum(0), pixels.T @ pixels, len(pixels))
    return x_train, data.y_train, x_test, data.y_test, mean, (eigvecs, eigvals)


# ----------------------------------------------------------------------------- one run
def build(recipe: Recipe, seed: int, device="cpu"):
    """The net and its optimizer for `recipe`."""
    if recipe.net == "alexnet":
        cfg = replace(CIFAR_ALEXNET, lrn=recipe.lrn, pool_kernel=recipe.pool_kernel,
                      dropout=recipe.dropout, input_size=recipe.crop)
        if recipe.columns == 1:
            cfg = cfg.one_column()
        model = AlexNet(cfg, devices=(device,) * cfg.columns, seed=seed)
        opt = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                        weight_decay=recipe.weight_decay)
    elif recipe.net == "conv-local":
        if recipe.dropout or recipe.columns != 2 or recipe.pool_kernel != 3:
            raise ValueError("the conv-local net has no dropout, columns or pooling options")
        model = ConvLocalNet(ConvLocalConfig(lrn=recipe.lrn, input_size=recipe.crop),
                             device=device, seed=seed)
        opt = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                        weight_decay=0.0,
                        per_param=model.optimizer_settings(weight_decay=recipe.weight_decay))
    else:
        raise ValueError(f"expected net 'alexnet' or 'conv-local', found {recipe.net!r}")
    return model, opt


RESULT = "result.json"


def train_recipe(run_dir, on_epoch, recipe: Recipe, seed: int, data_dir=None, device="cpu",
                 ten_patch=False):
    """Train `recipe` with `seed` in run_dir (a run of the experiment runner), then test it
    once more on the whole test set (centre patch, and the 10 patches if `ten_patch`)."""
    run_dir = Path(run_dir)
    x_train, y_train, x_test, y_test, mean, pca = load_data(
        data_dir, recipe.train_images, recipe.test_images)
    minidl.random.manual_seed(seed)
    model, opt = build(recipe, seed, device)
    batches = shared(CifarPatches(x_train, y_train, mean, recipe.crop, recipe.batch_size, seed,
                                  crops=recipe.crops, pca=pca if recipe.pca else None))
    test = CifarTest(x_test, y_test, mean, recipe.crop)

    def on_test(m):
        r = evaluate(m, test, ks=(1,))
        return {"test_loss": r["loss"], "test_top1": r["top1"]}

    meta = {"experiment": "claims", "recipe": asdict(recipe), "seed": seed}
    trainer = Trainer(model, opt, batches, run_dir,
                      TrainConfig(max_epochs=recipe.epochs, topk=(1,), progress=False,
                                  run_name=run_dir.name),
                      evaluate=on_test, extra_meta=meta, on_epoch=on_epoch)
    if trainer.checkpoint_path.exists():
        saved = minidl.serialize.load(trainer.checkpoint_path).get("meta")
        if saved != json.loads(json.dumps(meta)):
            raise ValueError(f"{run_dir} holds a run of other settings; remove it or use "
                             "another output folder")
        trainer.resume()
    result_path = run_dir / RESULT
    try:
        history = trainer.fit()
    except TrainingDiverged as e:
        # an outcome of the recipe, not a failure of the experiment: recorded, reported
        _write_json(result_path, {"diverged": str(e)})
        return read_metrics(run_dir)
    if not result_path.exists() or (ten_patch and "ten" not in json.loads(result_path.read_text())):
        result = {"centre": evaluate(model, test, ks=(1,))}
        if ten_patch:
            result.update(evaluate_ten(model, CifarTest(x_test, y_test, mean, recipe.crop, 50,
                                                        ten=True), ks=(1,)))
        _write_json(result_path, result)
    return history


def _write_json(path, data):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# ----------------------------------------------------------------------------- measures
def measure(history, result) -> dict:
    """The numbers the claims compare, from one run's curves and final test (None for
    each when the run diverged)."""
    if "diverged" in result:
        return {"diverged": result["diverged"], "test_error": None, "train_error": None,
                "overfit_gap": None, "ten_patch_error": None, "centre_minus_ten": None,
                "train_curve": [r["train_top1"] for r in history],
                "test_curve": [r["test_top1"] for r in history]}
    last = history[-1]
    out = {"test_error": result["centre"]["top1"],
           "train_error": last["train_top1"],
           # training error over the last epoch, with the augmentation and dropout on,
           # against the test error: how far the net fits its training images beyond
           # what it does on new ones
           "overfit_gap": result["centre"]["top1"] - last["train_top1"],
           "train_curve": [r["train_top1"] for r in history],
           "test_curve": [r["test_top1"] for r in history]}
    if "ten" in result:
        out["ten_patch_error"] = result["ten"]["top1"]
        out["centre_minus_ten"] = result["centre"]["top1"] - result["ten"]["top1"]
    return out


def epochs_to(errors, target):
    """Epochs (interpolated) until the training error first reaches `target`, or None."""
    previous = None
    for i, e in enumerate(errors):
        if e <= target:
            return float(i + 1) if previous is None else i + (previous - target) / (previous - e)
        previous = e
    return None


def verdict(diffs, expected_sign) -> str:
    """The rule fixed before the runs (docs/claims.md): with d the per-seed differences
    (variant - baseline) and m their mean, the claim's direction is *agreed* when m has the
    paper's sign and |m| > 2 * sd(d) / sqrt(n) (about a 95% paired interval, n >= 2 seeds),
    *opposite* when m has the other sign with the same margin, else *within noise*."""
    d = np.asarray(diffs, float)
    if len(d) < 2:
        return "one seed: no verdict"
    m, se = d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    if abs(m) <= 2 * se or m == 0:
        return "within noise"
    return "agrees" if np.sign(m) == expected_sign else "opposite"


# ----------------------------------------------------------------------------- the command
def claims(names=None, data_dir=None, out="runs/claims", seeds=2, quick=False, jobs=1,
           progress=True, device="cpu", epochs=None, train_images=None,
           report_only=False) -> dict:
    """Train every variant of the chosen claims (all by default) for `seeds` seeds and
    write the curves, plots and summary table under `out`. Returns the summary.
    With `report_only`, nothing trains: the report is made from the finished runs."""
    names = list(names or CLAIMS)
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; expected some of {list(CLAIMS)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, found {seeds}")
    out = Path(out)
    cifar10.load_cifar10(data_dir, download=False)          # a clear error before any run
    overrides = dict(QUICK) if quick else {}
    if epochs is not None:
        overrides["epochs"] = epochs
    if train_images is not None:
        overrides["train_images"] = train_images
    # Every (recipe, seed) once, however many claims compare to it.
    plan, runs = {}, {}
    for name in names:
        claim = CLAIMS[name]
        for variant, recipe in claim.recipes(replace(claim.base, **overrides)).items():
            for seed in range(seeds):
                key = f"{recipe.key()}/seed{seed}"
                plan[(name, variant, seed)] = key
                ten = name == "ten-patch" or (runs.get(key) and runs[key].kwargs["ten_patch"])
                runs[key] = Run(key, train_recipe,
                                dict(recipe=recipe, seed=seed, data_dir=data_dir, device=device,
                                     ten_patch=bool(ten)),
                                expected_epochs=recipe.epochs, label=_label(recipe, seed))
    if report_only:
        missing = [k for k in runs if not (out / "runs" / k / RESULT).exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of the {len(runs)} runs have not finished "
                                    f"in {out}/runs (e.g. {missing[0]}); train them first "
                                    "(the same command without --report-only)")
        return report(names, plan, runs, out, seeds, quick)
    started = time.monotonic()
    print(f"claims: {', '.join(names)}; {len(runs)} runs ({seeds} seed(s) each) in "
          f"{out}/runs; CIFAR-10 from {cifar10.find_cifar10(data_dir)}", flush=True)
    try:
        run_all(list(runs.values()), out / "runs", jobs=jobs, progress=progress, device=device,
                title="claims" + (" --quick" if quick else ""))
    finally:
        _add_wall_time(out, time.monotonic() - started)
    return report(names, plan, runs, out, seeds, quick)


def _add_wall_time(out, seconds):
    """Wall time of every invocation that trained in `out`, summed (runs may be resumed)."""
    path = Path(out) / "wall_seconds.json"
    total = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
    path.write_text(json.dumps({"seconds": total + seconds}))


def _label(recipe, seed):
    """The run in words: its net and what differs from that net's default recipe."""
    base = ALEXNET if recipe.net == "alexnet" else CONV_LOCAL
    changed = [f"{k}={v}" for k, v in asdict(recipe).items()
               if k not in RUN_SIZE and getattr(base, k) != v]
    return f"{recipe.net} [{', '.join(changed) or 'baseline'}] seed {seed}"


RUN_SIZE = ("epochs", "train_images", "test_images")


def report(names, plan, runs, out, seeds, quick) -> dict:
    """Curves (JSON, CSV), a plot per claim and the summary table, from the run folders."""
    from .figures import plot_claim
    measured = {}
    for key in runs:
        history = read_metrics(out / "runs" / key)
        result = json.loads((out / "runs" / key / RESULT).read_text())
        measured[key] = measure(history, result)
    wall = out / "wall_seconds.json"
    summary = {"seeds": seeds, "quick": quick, "claims": {},
               "wall_minutes": json.loads(wall.read_text())["seconds"] / 60 if wall.exists() else None,
               "train_minutes": sum(sum(r["seconds"] for r in read_metrics(out / "runs" / k))
                                    for k in runs) / 60}
    for name in names:
        claim = CLAIMS[name]
        variants = {}
        for variant in claim.variants:
            ms = [measured[plan[(name, variant, s)]] for s in range(seeds)]
            variants[variant] = {"runs": [plan[(name, variant, s)] for s in range(seeds)],
                                 "per_seed": ms}
        rows = []
        for c in claim.comparisons:
            base = [m for m in variants[c.baseline]["per_seed"]]
            var = [m for m in variants[c.variant]["per_seed"]]
            if c.metric == "epochs_to_train_error":
                # epochs until the training error reaches the worst final error of the two
                target = max(m["train_curve"][-1] for m in base + var if m["train_curve"])
                a = [None if "diverged" in m else epochs_to(m["train_curve"], target) for m in base]
                b = [None if "diverged" in m else epochs_to(m["train_curve"], target) for m in var]
                label = f"epochs to {target:.1%} training error"
            elif c.metric == "centre_minus_ten":
                a = [m["test_error"] for m in base]                   # centre patch
                b = [m["ten_patch_error"] for m in base]              # 10 patches
                label = "test error, centre patch -> 10 patches"
            else:
                a = [m[c.metric] for m in base]
                b = [m[c.metric] for m in var]
                label = c.metric.replace("_", " ")
            if any(v is None for v in a + b):               # a run diverged
                rows.append({"baseline": c.baseline, "variant": c.variant, "metric": label,
                             "paper": c.paper, "baseline_mean": None, "variant_mean": None,
                             "baseline_sd": None, "variant_sd": None, "difference": None,
                             "verdict": f"no verdict: {sum(v is None for v in a + b)} run(s) "
                                        "diverged"})
                continue
            diffs = [y - x for x, y in zip(a, b)]
            ten = c.metric == "centre_minus_ten"             # one net, tested two ways
            rows.append({"baseline": "centre patch" if ten else c.baseline,
                         "variant": "10 patches" if ten else c.variant, "metric": label,
                         "baseline_mean": float(np.mean(a)), "baseline_sd": _sd(a),
                         "variant_mean": float(np.mean(b)), "variant_sd": _sd(b),
                         "difference": float(np.mean(diffs)), "paper": c.paper,
                         "verdict": verdict(diffs, c.expected_sign)})
        summary["claims"][name] = {"section": claim.section, "says": claim.says,
                                   "scaled": claim.scaled, "recipe": asdict(claim.base),
                                   "variants": variants, "comparisons": rows}
        plot_claim(name, {v: [m for m in variants[v]["per_seed"]] for v in claim.variants},
                   out / f"{name}.png", title=f"Sec. {claim.section}: {name}"
                   + (" (--quick: the machinery only)" if quick else ""))
        _write_curves(out / f"{name}.csv", variants)
    (out / "claims.json").write_text(json.dumps(summary, indent=1))
    (out / "claims.md").write_text(table(summary))
    return summary


def _sd(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _write_curves(path, variants):
    lines = ["variant,seed,epoch,train_error,test_error"]
    for v, d in variants.items():
        for s, m in enumerate(d["per_seed"]):
            for e, (tr, te) in enumerate(zip(m["train_curve"], m["test_curve"])):
                lines.append(f"{v},{s},{e + 1},{tr:.5f},{te:.5f}")
    path.write_text("\n".join(lines) + "\n")


def _pm(mean, sd, pct=True):
    if mean is None:
        return "diverged"
    f = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.2f}")
    return f(mean) + (f" ± {f(sd)}" if sd is not None else "")


def table(summary) -> str:
    """The summary as a Markdown table."""
    lines = ["| claim | measured | baseline | variant | ours: baseline | ours: variant | "
             "difference | paper | verdict |", "|---" * 9 + "|"]
    for name, c in summary["claims"].items():
        for r in c["comparisons"]:
            pct = not r["metric"].startswith("epochs")
            unit = " pts" if pct else ""
            diff = ("" if r["difference"] is None else
                    f"{100 * r['difference']:+.2f}{unit}" if pct else f"{r['difference']:+.2f}")
            lines.append(f"| {name} (Sec. {c['section']}) | {r['metric']} | {r['baseline']} | "
                         f"{r['variant']} | {_pm(r['baseline_mean'], r['baseline_sd'], pct)} | "
                         f"{_pm(r['variant_mean'], r['variant_sd'], pct)} | {diff} | "
                         f"{r['paper']} | {r['verdict']} |")
    note = (f"\nErrors in %, mean ± sd over {summary['seeds']} seed(s); difference = variant - "
            "baseline, verdict by the rule of docs/claims.md.\n")
    return "\n".join(lines) + "\n" + note


def describe(summary) -> str:
    return table(summary)
