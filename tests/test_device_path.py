"""The device path under CuPy's rules: every layer, the two-column net on two GPUs,
SGD, checkpoints, the CLI end to end, the Figure 1 net, and the shape of a step.

Without a GPU these run on the test suite's CuPy stand-in (tests/standin: arrays
that refuse implicit host conversion and kernels on another device, with counters
of kernels and syncs); with real CuPy and a GPU the same tests run there
(`MINIDL_TEST_CUPY`, see tests/conftest.py).
"""
import json

import numpy as np
import pytest

import minidl
from minidl import Tensor, functions as F, nn, optim
from minidl.backend import get_device, is_cupy_array, to_numpy
from alexnet.model import AlexNet, CifarNet, CifarNetConfig, GroupedAlexNet
from alexnet.train import TrainConfig, Trainer
from alexnet.data.arrays import ArrayBatches

from test_model import small_config


@pytest.fixture(autouse=True)
def _two_gpus(cupy_devices):
    cupy_devices(2)


# ----------------------------------------------------------------------------
# work for a device runs on that device
# ----------------------------------------------------------------------------
def test_a_layer_on_the_second_gpu_is_made_used_cast_and_trained_there():
    layer = nn.Linear(6, 4, device="cuda:1", bias_init=1.0)          # normal_ and constant_
    assert all(p.data.device.id == 1 for p in layer.parameters())
    layer.astype(np.float64)                                         # Module.astype
    assert layer.weight.data.device.id == 1 and layer.weight.dtype == np.float64
    x = Tensor(np.ones((3, 6)), device="cuda:1")
    loss = F.softmax_cross_entropy(layer(x) * 2.0, np.array([0, 1, 3]))  # a constant, labels
    loss.backward()                                                  # seed gradient on cuda:1
    assert layer.weight.grad.device.id == 1
    opt = optim.SGD(layer.parameters(), lr=0.1)
    assert all(v.device.id == 1 for v in opt.velocity)               # momenta beside their weights
    opt.step()
    state = layer.state_dict()
    layer.load_state_dict(state)
    assert layer.weight.data.device.id == 1


def test_a_tensor_read_by_both_columns_sums_its_gradient_on_its_own_gpu():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, device="cuda:0")
    h = F.relu(x)                                  # not a leaf: its gradient is summed in backward
    y = minidl.copy(h, "cuda:1") * 3.0             # read on cuda:1 ...
    z = h * 2.0                                    # ... and on cuda:0
    (minidl.copy(y, "cuda:0").sum() + z.sum()).backward()
    assert x.grad.device.id == 0
    np.testing.assert_array_equal(to_numpy(x.grad), np.where(np.arange(6.0).reshape(2, 3) > 0, 5, 0))


def test_a_scalar_on_the_gpu_becomes_a_tensor_constant():
    t = Tensor(np.ones(3, np.float32), device="cuda:0")
    two = get_device("cuda:0").put(np.float32(2.0))
    assert is_cupy_array(two) and two.ndim == 0
    np.testing.assert_array_equal(to_numpy((t * Tensor(two, device="cuda:0")).data), 2.0)


# ----------------------------------------------------------------------------
# the net: two columns on two GPUs against the CPU, float64
# ----------------------------------------------------------------------------
def run_steps(devices, cfg, x, y, steps=1, dtype=np.float64, train=True):
    """`steps` SGD steps of AlexNet(cfg) on `devices`; its logits, gradients and weights."""
    minidl.random.manual_seed(0)
    net = AlexNet(cfg, devices=devices, seed=0).astype(dtype).train(train)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    for _ in range(steps):
        logits = net(Tensor(x, device=devices[0]))
        opt.zero_grad()
        F.softmax_cross_entropy(logits, y).backward()
        opt.step()
    grads = {n: to_numpy(p.grad) for n, p in net.named_parameters()}
    return to_numpy(logits.data), grads, net.state_dict(), net


@pytest.mark.parametrize("devices", [("cuda:0", "cuda:1"), ("cuda:1", "cuda:0"),
                                     ("cuda:0", "cuda:0"), ("cuda:1", "cuda:1")])
def test_the_two_column_net_on_gpus_equals_the_cpu_run(devices, rng):
    cfg = small_config()
    x = rng.standard_normal((4, 3, 67, 67))
    y = np.array([0, 3, 6, 2])
    cpu = run_steps(("cpu", "cpu"), cfg, x, y, steps=3)
    gpu = run_steps(devices, cfg, x, y, steps=3)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=0, atol=1e-10)           # logits
    for name in cpu[1]:
        np.testing.assert_allclose(gpu[1][name], cpu[1][name], rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(gpu[2][name], cpu[2][name], rtol=0, atol=1e-10, err_msg=name)
    net = gpu[3]
    for column, device in zip(net.columns, devices):
        assert all(p.data.device.id == get_device(device).index for p in column.parameters())


def test_the_grouped_net_on_a_gpu_equals_the_two_columns(rng):
    cfg = small_config()
    net = AlexNet(cfg, devices=("cuda:1", "cuda:1"), seed=0).astype(np.float64).eval()
    grouped = GroupedAlexNet(net).eval()
    x = Tensor(rng.standard_normal((2, 3, 67, 67)), device="cuda:1")
    np.testing.assert_allclose(to_numpy(grouped(x).data), to_numpy(net(x).data), atol=1e-12)


def test_the_figure1_net_trains_on_a_gpu_as_on_the_cpu(rng):
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    weights = []
    for device in ("cpu", "cuda:0"):
        net = CifarNet(CifarNetConfig(), device=device, seed=0, dtype=np.float64)
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0)
        for _ in range(3):
            loss = F.softmax_cross_entropy(net(Tensor(x.astype(np.float64), device=device)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        weights.append(net.state_dict())
    for name in weights[0]:
        np.testing.assert_allclose(weights[1][name], weights[0][name], rtol=0, atol=1e-12)


def test_topk_counts_on_the_device_with_a_few_kernels_and_no_sync(cupy_counters):
    import cupy
    from alexnet.evaluate import topk_wrong
    with cupy.cuda.Device(1):
        scores = cupy.asarray(np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 3.0, 3.0]]))
        labels = cupy.asarray(np.array([0, 1, 2]))
        with cupy_counters.count() as counts:
            wrong = topk_wrong(scores, labels, (1, 2))
    assert counts["syncs"] == 0 and counts["d2h"] == 0, counts["syncs_by_kind"]
    assert 0 < counts["kernels_per_device"][1] <= 12, counts["kernels_per_device"]
    assert all(w.device.id == 1 for w in wrong.values())
    assert {k: int(w.get()) for k, w in wrong.items()} == {1: 2, 2: 1}   # ties count against


# ----------------------------------------------------------------------------
# checkpoints and the trainer
# ----------------------------------------------------------------------------
def test_trainer_checkpoints_and_resumes_on_two_gpus(tmp_path, rng):
    cfg = small_config(dropout=0.0)
    x = rng.integers(0, 256, (16, 3, 67, 67), dtype=np.uint8)
    y = rng.integers(0, cfg.num_classes, 16)
    mean = x.mean(axis=0)

    def trainer(out, epochs):
        minidl.random.manual_seed(0)
        net = AlexNet(cfg, devices=("cuda:0", "cuda:1"), seed=0)
        opt = optim.SGD(net.parameters(), lr=0.01)
        return Trainer(net, opt, ArrayBatches(x, y, mean, batch_size=8, seed=0), out,
                       TrainConfig(max_epochs=epochs, topk=(1,), progress=False, log_steps=1))

    straight = trainer(tmp_path / "a", 2)
    straight.fit()
    first = trainer(tmp_path / "b", 1)
    first.fit()
    again = trainer(tmp_path / "b", 2)
    assert again.resume()
    assert all(v.device.id == p.data.device.id for p, v in zip(again.optimizer.params,
                                                               again.optimizer.velocity))
    again.fit()
    a, b = straight.model.state_dict(), again.model.state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert [r["train_top1"] for r in straight.state.history] == \
           [r["train_top1"] for r in again.state.history]


# ----------------------------------------------------------------------------
# the shape of a training step: few kernels, no waiting on the GPU
# ----------------------------------------------------------------------------
def step_counts(counters, devices, batch):
    """Kernels per device and host syncs of one training step of the paper's net."""
    from benchmarks.gpu_check import training_step
    step = training_step(devices, batch)
    step()                                          # the first step makes the velocities
    with counters.count() as counts:
        step()
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("devices", [("cuda:0", "cuda:0"), ("cuda:0", "cuda:1")])
def test_a_training_step_of_the_paper_net_is_shaped_for_a_gpu(devices, cupy_counters):
    counts = step_counts(cupy_counters, devices, batch=128)
    for d in set(devices):
        kernels = counts["kernels_per_device"].get(get_device(d).index, 0)
        assert 0 < kernels <= 1200, (d, kernels)   # 775 on one device, 412 + 368 on two
    assert counts["syncs"] == 0 and counts["d2h"] == 0, counts["syncs_by_kind"]


def test_the_kernels_of_a_step_do_not_grow_with_the_batch(cupy_counters):
    small = step_counts(cupy_counters, ("cuda:0", "cuda:1"), 2)
    larger = step_counts(cupy_counters, ("cuda:0", "cuda:1"), 6)
    assert small["kernels_per_device"] == larger["kernels_per_device"]


# ----------------------------------------------------------------------------
# the command line, end to end
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from alexnet import cli
    from test_imagenet_train import image_folder
    root = tmp_path_factory.mktemp("imagenet")
    image_folder(root / "src", train=4, val=2)
    assert cli.main(["prepare", str(root / "src"), str(root / "cache"), "--size", "76",
                     "--workers", "0", "--no-progress"]) == 0
    return root / "cache"


@pytest.mark.parametrize("devices", ["cuda:0,cuda:1", "cuda:1"])
def test_train_resume_evaluate_and_figures_on_gpus(devices, cache, tmp_path):
    from alexnet import cli
    from alexnet.imagenet_train import load_checkpoint
    from alexnet.train import read_metrics
    from test_imagenet_train import SMALL
    out = tmp_path / "run"
    common = ["--data", str(cache), "--out", str(out), "--batch", "4", "--workers", "1",
              "--devices", devices, "--checkpoint-steps", "2", *SMALL]
    assert cli.main(["train", *common, "--epochs", "1"]) == 0
    assert cli.main(["train", *common, "--epochs", "2", "--resume"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    model, meta = load_checkpoint(out)
    assert meta["epochs_trained"] == 2
    assert cli.main(["evaluate", str(out), "--data", str(cache), "--workers", "0", "--batch", "4",
                     "--devices", devices, "--json", str(tmp_path / "eval.json"),
                     "--no-progress"]) == 0
    assert cli.main(["figures", str(out), "--data", str(cache), "--out", str(tmp_path / "fig"),
                     "--images", "2", "--neighbours", "2", "--max-train", "8",
                     "--devices", devices, "--no-progress"]) == 0
    assert (tmp_path / "fig" / "figure4.png").stat().st_size > 2000


@pytest.mark.slow
@pytest.mark.parametrize("second", ["none", "cuda:1"])
def test_the_gpu_check_runs_to_its_end_on_one_and_two_devices(second, tmp_path, capsys):
    from benchmarks import gpu_check
    assert gpu_check.main(["--device", "cuda:0", "--second-device", second, "--batch", "2",
                           "--check-batch", "1",
                           "--steps", "1", "--pipeline-steps", "2", "--pipeline-batch", "2",
                           "--pipeline-images", "8", "--pipeline-warmup", "1",
                           "--pipeline-workers", "1",
                           "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 check(s) failed" in out and "speed" in out and "pipeline" in out
    assert (tmp_path / "gpu_check.json").exists()


def test_figure1_runs_on_a_gpu_with_the_cpu_curves(tmp_path, capsys):
    from alexnet import cli
    from test_figure1 import write_cifar
    data = write_cifar(tmp_path / "data")
    curves = {}
    for device in ("cpu", "cuda:0"):
        out = tmp_path / device.replace(":", "")
        assert cli.main(["figure1", "--data-dir", str(data), "--output-dir", str(out), "--quick",
                         "--no-download", "--no-progress", "--workers", "1",
                         "--device", device]) == 0
        curves[device] = json.loads((out / "figure1.json").read_text())["runs"]
    for act in ("relu", "tanh"):
        np.testing.assert_allclose(curves["cuda:0"][act]["train_error"],
                                   curves["cpu"][act]["train_error"], atol=1e-6)
