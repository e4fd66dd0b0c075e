"""bench_ops names every layer of each net's step on both libraries, and counts its flops."""
import pytest

from benchmarks import bench_ops


def test_the_cifar_steps_flops_add_up_by_hand():
    # conv1 (no dx): 2 passes; conv2, conv3: 3; fc: 3; 2 flops per multiply-add
    N = 128
    conv1 = N * 32 * 32 * 32 * 3 * 25
    conv2 = N * 16 * 16 * 32 * 32 * 25
    conv3 = N * 8 * 8 * 64 * 32 * 25
    fc = N * 1024 * 10
    assert bench_ops.NETS["cifar"]["flops"](N) == 2 * (2 * conv1 + 3 * (conv2 + conv3 + fc))


@pytest.mark.parametrize("net, N", [("cifar", 3), ("alexnet", 2)])
def test_every_minidl_op_of_a_step_gets_its_layer(net, N):
    times, total = bench_ops.minidl_runner(net, N)()
    names = {name for name, _, _ in bench_ops.NETS[net]["layers"](N)}
    assert {layer for layer, _ in times} == names | {"update"}       # nothing left as "other"
    assert all(t >= 0 for t in times.values()) and sum(times.values()) <= total
