import numpy as np
import pytest

from minidl import Tensor, nn, optim


def test_sgd_matches_a_hand_computed_three_step_sequence():
    # One weight w0 = 1.0 with fixed gradient g = 0.5 at every step,
    # lr = 0.1, momentum 0.9, weight decay 0.0005, Section 5's rule:
    #   v <- 0.9 v - 0.0005*0.1*w - 0.1*g ;  w <- w + v
    # step 1: v = -0.00005 - 0.05 = -0.05005            w = 0.94995
    # step 2: v = 0.9*-0.05005 - 0.00005*0.94995 - 0.05
    #           = -0.045045 - 0.0000474975 - 0.05 = -0.0950924975   w = 0.8548575025
    # step 3: v = 0.9*-0.0950924975 - 0.00005*0.8548575025 - 0.05
    #           = -0.08558324775 - 0.000042742875125 - 0.05 = -0.135625990625125
    #         w = 0.719231511874875
    w = nn.Parameter(np.array([1.0]))
    opt = optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.0005)
    expected_w = [0.94995, 0.8548575025, 0.719231511874875]
    expected_v = [-0.05005, -0.0950924975, -0.135625990625125]
    for ew, ev in zip(expected_w, expected_v):
        w.grad = np.array([0.5])
        opt.step()
        assert w.data[0] == pytest.approx(ew, abs=1e-15)
        assert opt.velocity[0][0] == pytest.approx(ev, abs=1e-15)


def test_sgd_skips_parameters_without_gradient_and_zero_grad():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert a.data[0] < 1
    opt.zero_grad()
    assert a.grad is None


def test_sgd_state_round_trip_continues_identically():
    def run(opt, w, steps):
        for s in range(steps):
            w.grad = np.array([0.1 * (s + 1), -0.2])
            opt.step()
    w1 = nn.Parameter(np.array([1.0, 2.0]))
    o1 = optim.SGD([w1], lr=0.05)
    run(o1, w1, 5)
    w2 = nn.Parameter(np.array([1.0, 2.0]))
    o2 = optim.SGD([w2], lr=0.05)
    run(o2, w2, 2)
    state, weights = o2.state_dict(), w2.data.copy()
    w3 = nn.Parameter(weights)
    o3 = optim.SGD([w3], lr=0.5)
    o3.load_state_dict(state)
    for s in range(2, 5):
        w3.grad = np.array([0.1 * (s + 1), -0.2])
        o3.step()
    np.testing.assert_allclose(w3.data, w1.data, rtol=0, atol=1e-15)


def test_sgd_bad_arguments():
    with pytest.raises(ValueError, match="at least one parameter"):
        optim.SGD([])
    with pytest.raises(ValueError, match="lr > 0"):
        optim.SGD([nn.Parameter(np.ones(1))], lr=-1)
    opt = optim.SGD([nn.Parameter(np.ones(2))])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        opt.load_state_dict({"lr": 0.1, "momentum": 0.9, "weight_decay": 0,
                             "velocity": [np.zeros(3)]})


def test_plateau_schedule_divides_by_ten_a_bounded_number_of_times():
    opt = optim.SGD([nn.Parameter(np.ones(1))], lr=0.01)
    sched = optim.ReduceOnPlateau(opt, patience=2, max_reductions=3)
    errors = [0.9, 0.8, 0.8, 0.8,        # plateau for 2 epochs -> 0.001
              0.7, 0.7, 0.71,            # -> 0.0001
              0.7, 0.7,                  # -> 0.00001
              0.7, 0.7, 0.7, 0.7]        # exhausted: stays
    lrs = []
    for e in errors:
        sched.step(e)
        lrs.append(opt.lr)
    assert lrs[1] == 0.01 and lrs[3] == pytest.approx(0.001)
    assert lrs[6] == pytest.approx(0.0001) and lrs[8] == pytest.approx(0.00001)
    assert lrs[-1] == pytest.approx(0.00001) and sched.exhausted
    restored = optim.ReduceOnPlateau(opt)
    restored.load_state_dict(sched.state_dict())
    assert restored.state_dict() == sched.state_dict()


def test_step_schedule_of_the_2012_run():
    opt = optim.SGD([nn.Parameter(np.ones(1))], lr=0.01)
    sched = optim.StepSchedule(opt, [23, 51, 78])
    sched.set_epoch(0)
    assert opt.lr == 0.01
    sched.set_epoch(51)
    assert opt.lr == pytest.approx(0.0001)
    assert sched.lr_at(90) == pytest.approx(0.00001)


def test_training_a_linear_model_reduces_the_loss(rng):
    from minidl import functions as F
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Linear(5, 2, weight_std=0.01)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0)
    losses = []
    for _ in range(30):
        loss = F.softmax_cross_entropy(model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_sgd_blocked_in_place_step_equals_the_four_lines_exactly(rng):
    # Larger than one block, an odd size, float32 and float64, a non-contiguous grad:
    # the same bits as the rule written out with temporaries.
    for dtype in (np.float32, np.float64):
        shape = (3, optim.SGD.block // 2 + 7)
        w0 = rng.standard_normal(shape).astype(dtype)
        w = nn.Parameter(w0.copy())
        opt = optim.SGD([w], lr=0.01, momentum=0.9, weight_decay=0.0005)
        ref_w, ref_v = w0.copy(), np.zeros_like(w0)
        for _ in range(3):
            g = np.asfortranarray(rng.standard_normal(shape).astype(dtype))
            w.grad = g
            opt.step()
            ref_v *= 0.9
            ref_v -= (0.0005 * 0.01) * ref_w
            ref_v -= 0.01 * g
            ref_w += ref_v
            np.testing.assert_array_equal(w.data, ref_w)
            np.testing.assert_array_equal(opt.velocity[0], ref_v)
