import os

import numpy as np
import pytest

import minidl as md
from minidl import nn, optim, serialize


def test_round_trip_of_nested_state(tmp_path):
    state = {"model": {"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(2, np.float32)},
             "optim": {"lr": 0.01, "velocity": [np.ones(3), np.full((1,), 2.0)]},
             "epoch": 7, "done": False, "note": None, "rng": md.random.get_state()}
    path = serialize.save(tmp_path / "s.npz", state)
    back = serialize.load(path)
    np.testing.assert_array_equal(back["model"]["w"], state["model"]["w"])
    assert back["model"]["b"].dtype == np.float32
    assert back["optim"]["lr"] == 0.01 and back["epoch"] == 7 and back["done"] is False
    np.testing.assert_array_equal(back["optim"]["velocity"][1], [2.0])
    assert back["rng"] == state["rng"]     # 128-bit integers survive JSON


def test_module_and_optimizer_round_trip(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))
    opt = optim.SGD(net.parameters(), lr=0.1)
    for p in net.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    serialize.save(tmp_path / "c.npz", {"model": dict(net.state_dict()), "optim": opt.state_dict()})
    net2 = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))
    opt2 = optim.SGD(net2.parameters(), lr=0.5)
    state = serialize.load(tmp_path / "c.npz")
    net2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    assert opt2.lr == 0.1
    for a, b in zip(opt.velocity, opt2.velocity):
        np.testing.assert_array_equal(a, b)
    serialize.save_module(tmp_path / "m.npz", net)
    net3 = serialize.load_module(tmp_path / "m.npz", nn.Sequential(nn.Linear(3, 2), nn.Tanh(),
                                                                   nn.Linear(2, 2)))
    np.testing.assert_array_equal(net3[0].weight.data, net[0].weight.data)


def test_write_is_atomic_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    serialize.save(path, {"x": np.ones(3)})

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        serialize.save(path, {"x": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(serialize.load(path)["x"], np.ones(3))
    assert os.listdir(tmp_path) == ["ckpt.npz"]      # no temp file left behind


def test_no_pickle_and_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="cannot store object"):
        serialize.save(tmp_path / "a.npz", {"x": object()})
    with pytest.raises(TypeError, match="cannot store set"):
        serialize.save(tmp_path / "b.npz", {"x": {1, 2}})
    with pytest.raises(TypeError, match="holds Python objects"):
        serialize.save(tmp_path / "c.npz", {"x": np.array([{"a": 1}], dtype=object)})
    # an object array cannot be loaded: allow_pickle=False
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable minidl state"):
        serialize.load(tmp_path / "evil.npz")
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "evil.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        serialize.load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not written by minidl"):
        serialize.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        serialize.load(tmp_path / "missing.npz")
