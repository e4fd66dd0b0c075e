"""`alexnet claims`: variants differ only in what their claim names, one data order, resume."""
import dataclasses
import json
import re

import numpy as np
import pytest

from alexnet import claims as C
from alexnet import cli
from alexnet.model import AlexNet, ConvLocalNet
from test_figure1 import write_cifar


def _layers(model):
    """(name, layer description, parameter shapes) of every module: what a net is made of."""
    return [(name, repr(m).splitlines()[0], tuple(p.shape for p in m.parameters()))
            for name, m in model.named_modules()]


def _differences(a, b):
    return {k for k in a if a[k] != b[k]}


@pytest.mark.parametrize("name", sorted(C.CLAIMS))
def test_each_variant_changes_only_what_its_claim_names(name):
    claim = C.CLAIMS[name]
    recipes = claim.recipes(claim.base)
    base = recipes[next(iter(claim.variants))]
    named = {"lrn": {"lrn"}, "overlap": {"pool_kernel"}, "dropout": {"dropout"},
             "augment": {"crops", "pca"}, "columns": {"columns"},
             "weight-decay": {"weight_decay"}, "ten-patch": set()}[name]
    for variant, recipe in recipes.items():
        changed = _differences(dataclasses.asdict(base), dataclasses.asdict(recipe))
        assert changed <= named, (variant, changed)
        assert changed or recipe == base
        # and the nets built from them: the same layers but where the claim says
        m0, _ = C.build(base, seed=0)
        m1, _ = C.build(recipe, seed=0)
        if changed & {"crops", "pca", "weight_decay"} or not changed:
            assert _layers(m0) == _layers(m1)
            for p0, p1 in zip(m0.parameters(), m1.parameters()):
                np.testing.assert_array_equal(p0.data, p1.data)       # same seed, same init


def test_the_model_variants_differ_in_their_layers_as_the_claims_say():
    base, _ = C.build(C.ALEXNET, 0)
    assert base.cfg.lrn and base.cfg.pool_kernel == 3 and base.cfg.columns == 2
    pooled, _ = C.build(dataclasses.replace(C.ALEXNET, pool_kernel=2), 0)
    assert dataclasses.replace(pooled.cfg, pool_kernel=3) == base.cfg
    assert _layers(pooled) == _layers(base)          # ceil-mode pools: the same sizes
    one, _ = C.build(dataclasses.replace(C.ALEXNET, columns=1), 0)
    assert len(one.columns) == 1 and one.columns[0].conv1.out_channels == 32 // 2
    assert one.columns[0].conv5.out_channels == 64 and one.columns[0].fc6.out_features == 256
    assert one.cfg == dataclasses.replace(base.cfg, columns=1,
                                          conv_channels=(16, 32, 48, 48, 64))
    nodrop, _ = C.build(dataclasses.replace(C.ALEXNET, dropout=0.0), 0)
    assert nodrop.drop.p == 0.0 and base.drop.p == 0.5
    assert [row for row in _layers(nodrop) if row[0] != "drop"] == \
        [row for row in _layers(base) if row[0] != "drop"]
    with_lrn, opt = C.build(C.CONV_LOCAL, 0)
    without, _ = C.build(dataclasses.replace(C.CONV_LOCAL, lrn=False), 0)
    assert isinstance(with_lrn, ConvLocalNet) and with_lrn.cfg.lrn and not without.cfg.lrn
    assert _layers(with_lrn) == _layers(without)
    # cuda-convnet's rates: biases at twice the weights' rate, decay on the top three
    assert opt.per_param[1] == (2.0, 0.0) and opt.per_param[0] == (1.0, 0.0)
    names = [n for n, _ in with_lrn.named_parameters()]
    assert opt.per_param[names.index("fc.weight")] == (1.0, 0.004)
    assert isinstance(base, AlexNet)


def test_every_variant_sees_the_same_images_in_the_same_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    mean = images.mean(0).astype(np.float32)
    pca = (np.eye(3), np.array([0.2, 0.02, 0.002]))
    variants = [C.CifarPatches(images, labels, mean, 24, 16, seed=3, crops=c, pca=p)
                for c, p in ((True, pca), (True, None), (False, None))]
    for epoch in (0, 1):
        ys = [[y for _, y in v.epoch(epoch)] for v in variants]
        for other in ys[1:]:
            for a, b in zip(ys[0], other):
                np.testing.assert_array_equal(a, b)
    # the same crops with and without colour noise: the noise is a shift per image
    (xa, _), (xb, _) = next(variants[0].epoch(0)), next(variants[1].epoch(0))
    d = xa - xb
    assert np.allclose(d, d[:, :, :1, :1], atol=1e-3) and np.abs(d).max() > 0.1
    # a resumed epoch gives the same later batches
    full = [x for x, _ in variants[0].epoch(1)]
    later = [x for x, _ in variants[0].epoch(1, start=1)]
    np.testing.assert_array_equal(full[1], later[0])
    # another seed, another order
    other = C.CifarPatches(images, labels, mean, 24, 16, seed=4)
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(other.epoch(0), variants[0].epoch(0)))


def test_verdict_rule():
    assert C.verdict([0.02, 0.03, 0.025], +1) == "agrees"
    assert C.verdict([-0.02, -0.03, -0.025], +1) == "opposite"
    assert C.verdict([0.02, -0.01, 0.03], +1) == "within noise"
    assert C.verdict([0.02], +1) == "one seed: no verdict"
    assert C.epochs_to([0.9, 0.5, 0.3], 0.4) == pytest.approx(2.5)
    assert C.epochs_to([0.9, 0.8], 0.4) is None


@pytest.mark.slow
def test_claims_quick_end_to_end_keeps_finished_runs(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar(data, n=60)
    out = tmp_path / "claims"
    args = ["claims", "dropout", "ten-patch", "--quick", "--data-dir", str(data), "-o", str(out),
            "--no-progress", "--seeds", "2", "--train-images", "40", "-j", "2"]
    assert cli.main(args) == 0
    summary = json.loads((out / "claims.json").read_text())
    assert set(summary["claims"]) == {"dropout", "ten-patch"}
    rows = summary["claims"]["dropout"]["comparisons"]
    assert {r["metric"] for r in rows} >= {"overfit gap", "test error"}
    assert all(r["verdict"] in ("agrees", "opposite", "within noise") for r in rows)
    for name in ("dropout", "ten-patch"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.csv").read_text().startswith("variant,seed,epoch")
    assert "| dropout (Sec. 4.2)" in (out / "claims.md").read_text()
    # the baseline is shared: 2 recipes x 2 seeds, not 3 x 2
    assert len(list((out / "runs").glob("*/seed*"))) == 4
    ten = summary["claims"]["ten-patch"]["comparisons"][0]
    assert 0 <= ten["variant_mean"] <= 1
    from benchmarks.report import claims_section, is_claims, render
    assert is_claims(summary) and "| dropout (Sec. 4.2)" in claims_section("claims", summary)
    assert "The paper's claims on CIFAR-10" in render({"claims": summary})
    # run again: nothing trains, the same numbers
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/checkpoint.npz")}
    capsys.readouterr()
    assert cli.main(args) == 0
    printed = capsys.readouterr().out.split("| claim")[0]
    assert "continuing" in printed and not re.search(r"epoch \d+:", printed)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "claims.json").read_text())["claims"] == summary["claims"]


def test_claims_help_lists_every_claim(capsys):
    with pytest.raises(SystemExit):
        cli.main(["claims", "--help"])
    text = capsys.readouterr().out
    for name in C.CLAIMS:
        assert f"  {name} " in text


def test_an_unknown_claim_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar(data, n=20)
    assert cli.main(["claims", "nonsense", "--data-dir", str(data), "-o", str(tmp_path / "o"),
                     "--quick"]) == 1
    assert "unknown claim(s) ['nonsense']" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_the_runs_and_the_same_command_continues(tmp_path):
    """A scheduler's SIGTERM mid-experiment: exit 143 with the hint, no traceback; the same
    command then keeps the finished runs and finishes the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time
    data = tmp_path / "data"
    write_cifar(data, n=60)
    out = tmp_path / "claims"
    cmd = [sys.executable, "-m", "alexnet", "claims", "dropout", "--quick", "--data-dir",
           str(data), "-o", str(out), "--seeds", "3", "--train-images", "40", "--no-progress",
           "--processes", "2", "--epochs", "3"]         # 6 runs: some still queued at the signal
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIDL_")}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*/seed*/result.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "run the same command again" in err
    assert "Traceback" not in err
    finished = {r.parent: r.stat().st_mtime_ns for r in out.glob("runs/*/seed*/result.json")}
    assert finished
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {r.parent: r.stat().st_mtime_ns for r in out.glob("runs/*/seed*/result.json")
            if r.parent in finished} == finished
    assert len(list(out.glob("runs/*/seed*/result.json"))) == 6
    for result in out.glob("runs/*/seed*/metrics.jsonl"):
        assert [json.loads(line)["epoch"] for line in result.read_text().splitlines()] == [1, 2, 3]


def test_a_diverged_run_is_an_outcome_not_a_crash(tmp_path):
    data = tmp_path / "data"
    write_cifar(data, n=40)
    recipe = dataclasses.replace(C.ALEXNET, lr=1e4, epochs=2, train_images=40, test_images=20)
    history = C.train_recipe(tmp_path / "run", lambda record: None, recipe, seed=0,
                             data_dir=str(data))
    result = json.loads((tmp_path / "run" / C.RESULT).read_text())
    assert "loss" in result["diverged"] and len(history) < recipe.epochs
    m = C.measure(history, result)
    assert m["test_error"] is None and m["diverged"]
    from alexnet.figures import plot_claim
    ok = {"train_curve": [0.9, 0.8], "test_curve": [0.9, 0.85]}
    plot_claim("x", {"a": [ok, m], "b": [ok, ok]}, tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
