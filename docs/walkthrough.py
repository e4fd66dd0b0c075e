# %% [markdown]
# # One image through AlexNet, layer by layer
#
# A first tour of the project: one real photograph goes through every stage of
# the two-column network of Figure 2, written out op by op as
# `alexnet/model.py`'s `AlexNet.forward` runs it, with a plot of what each
# stage makes of the image. Column A lives on device `cpu:0`, column B on
# `cpu:1`: two NumPy devices that minidl keeps apart as it would two GPUs, so
# every place where Figure 2's columns cross shows up as an explicit copy. At
# the end, the gradient of one layer is checked against finite differences.
#
# Run it as a script (`python docs/walkthrough.py`, about ten seconds on two
# cores) or open it as a notebook: Jupyter (with jupytext) and VS Code read the
# `# %%` lines as cells. The plots are written to `runs/walkthrough/` in the
# current folder (`runs/` is where every command of the project writes). The network is freshly initialised (Section 5's
# N(0, 0.01^2) weights), not trained: the maps show what random filters do
# to the image, the shapes and the devices are those of the trained net.

# %%
from pathlib import Path

import matplotlib
matplotlib.use("Agg")                      # PNG files, no window
import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import Tensor, functions as F
from alexnet.inspection import activation_grid, activation_strip, default_image, load_image, preprocess
from alexnet.model import AlexNet, AlexNetConfig

OUT = Path("runs") / "walkthrough"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The image
#
# Grace Hopper's portrait, a public-domain photograph that matplotlib ships as
# sample data (if this matplotlib lacks it, the built-in synthetic scene of
# `alexnet inspect`). Section 2's preparation: shorter side to 256, the
# central 256x256, its central 227x227 patch, minus the mean colour.

# %%
try:
    from matplotlib import cbook
    image = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
except (OSError, ValueError):
    image = default_image()
x = preprocess(image)[None]                                   # (1, 3, 227, 227) float32

plt.figure(figsize=(4, 4))
plt.imshow(np.clip((x[0].transpose(1, 2, 0) + (123.68, 116.78, 103.94)) / 255, 0, 1))
plt.title(f"input {x.shape[1:]} (mean added back)")
plt.axis("off")
plt.savefig(OUT / "00_input.png", dpi=80, bbox_inches="tight")
plt.close()

# %% [markdown]
# ## The network
#
# `AlexNet(cfg, devices=...)` builds one `Column` per device: conv1..conv5,
# fc6 and fc7, each holding half of the paper's kernels (48 of conv1's 96,
# ...). fc8 lives on the first device. `eval()` switches dropout to its test
# behaviour (Section 4.2: multiply by 0.5).

# %%
cfg = AlexNetConfig()
net = AlexNet(cfg, devices=("cpu:0", "cpu:1"), seed=0).eval()
A, B = net.columns
print(f"{sum(p.data.size for p in net.parameters()):,} parameters")   # 60,965,224
print(f"column A on {A.device}, column B on {B.device}, fc8 on {net.devices[0]}")

# %% [markdown]
# ## Stepping through
#
# `stages` collects every step: its name and the output of each column.
# `step(name, f, hs)` applies `f` to each column's tensor and plots the result:
# the first 16 feature maps as a grid, vectors as rows of 64 values, coloured by
# their values (the colour bar is in the layer's own units: a softmax's 0.003
# reads 0.003, not 1).


# %%
class Stage:
    def __init__(self, name, outputs):
        self.name, self.outputs = name, outputs            # outputs: one tensor per column

    @property
    def devices(self):
        return [str(t.device) for t in self.outputs]


stages = []


def plot(stage):
    fig, axes = plt.subplots(1, len(stage.outputs), figsize=(4 * len(stage.outputs), 4),
                             squeeze=False)
    for ax, t, column in zip(axes[0], stage.outputs, "AB"):
        a = t.numpy()[0]                                     # the one image of the batch
        if a.ndim == 3:                                      # (C, H, W) maps: a grid
            shown = activation_grid(a[:16], normalise=False)
            what = f"the first {min(16, len(a))} of {len(a)} maps"
        else:                                                # (F,) features: rows of 64
            shown = activation_strip(a, normalise=False)
            what = f"{a.size} values"
        im = ax.imshow(np.ma.masked_invalid(shown), cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(f"{stage.name} column {column}: {what}\n{tuple(t.shape)} on {t.device}",
                     fontsize=9)
        ax.axis("off")
    fig.savefig(OUT / f"{len(stages):02d}_{stage.name.replace(' ', '_')}.png", dpi=60,
                bbox_inches="tight")
    plt.close(fig)


def step(name, f, hs):
    """f(column, h) for each column's h; the outputs are recorded and plotted."""
    out = [f(c, h) for c, h in zip(net.columns, hs)]
    stages.append(Stage(name, out))
    plot(stages[-1])
    return out


def cross(name, hs):
    """Where Figure 2's columns cross: each column gets [A, B] along the channels,
    the other column's half copied over from its device (`minidl.copy`)."""
    ha, hb = hs
    a = F.concat([ha, minidl.copy(hb, ha.device)], axis=1)   # B's half copied to cpu:0
    b = F.concat([minidl.copy(ha, hb.device), hb], axis=1)   # A's half copied to cpu:1
    stages.append(Stage(name, [a, b]))
    plot(stages[-1])
    return [a, b]


def relu(h):                                   # Section 3.1: max(0, h)
    return F.relu(h)


def lrn(h):                                    # Section 3.3: k=2, n=5, alpha=1e-4, beta=0.75
    return F.local_response_norm(h, cfg.lrn_n, cfg.lrn_k, cfg.lrn_alpha, cfg.lrn_beta)


def pool(h):                                   # Section 3.4: 3x3 windows, stride 2
    return F.max_pool2d(h, cfg.pool_kernel, cfg.pool_stride)

# %% [markdown]
# ### conv1, conv2: each column alone (Sections 3.1, 3.3, 3.4)
#
# The image is copied to both devices. conv1: 48 kernels of 11x11x3 per
# column, stride 4. Then ReLU, local response normalisation, overlapping max
# pooling (3x3, stride 2); conv2 the same with 128 kernels of 5x5x48.

# %%
with minidl.no_grad():
    xt = Tensor(x, device="cpu:0")
    hs = [xt, minidl.copy(xt, "cpu:1")]                       # (1, 3, 227, 227) on each device
    hs = step("conv1", lambda c, h: c.conv1(h), hs)           # (1, 48, 55, 55)
    hs = step("relu1", lambda c, h: relu(h), hs)
    hs = step("lrn1", lambda c, h: lrn(h), hs)
    hs = step("pool1", lambda c, h: pool(h), hs)              # (1, 48, 27, 27)
    hs = step("conv2", lambda c, h: c.conv2(h), hs)           # (1, 128, 27, 27)
    hs = step("relu2", lambda c, h: relu(h), hs)
    hs = step("lrn2", lambda c, h: lrn(h), hs)
    hs = step("pool2", lambda c, h: pool(h), hs)              # (1, 128, 13, 13)

# %% [markdown]
# ### conv3 reads both columns; conv4, conv5 each their own (Section 3.2)

# %%
with minidl.no_grad():
    hs = cross("copy before conv3", hs)                       # (1, 256, 13, 13) on each
    hs = step("conv3", lambda c, h: c.conv3(h), hs)           # (1, 192, 13, 13)
    hs = step("relu3", lambda c, h: relu(h), hs)
    hs = step("conv4", lambda c, h: c.conv4(h), hs)           # (1, 192, 13, 13)
    hs = step("relu4", lambda c, h: relu(h), hs)
    hs = step("conv5", lambda c, h: c.conv5(h), hs)           # (1, 128, 13, 13)
    hs = step("relu5", lambda c, h: relu(h), hs)
    hs = step("pool5", lambda c, h: F.flatten(pool(h)), hs)   # (1, 128*6*6 = 4608)

# %% [markdown]
# ### fc6, fc7, fc8: every fully connected layer reads both columns (Sections 3.5, 4.2)

# %%
with minidl.no_grad():
    hs = cross("copy before fc6", hs)                         # (1, 9216)
    hs = step("fc6", lambda c, h: c.fc6(h), hs)               # (1, 2048)
    hs = step("relu6", lambda c, h: relu(h), hs)
    hs = step("dropout6", lambda c, h: net.drop(h), hs)       # eval: times 0.5
    hs = cross("copy before fc7", hs)                         # (1, 4096)
    hs = step("fc7", lambda c, h: c.fc7(h), hs)               # (1, 2048)
    hs = step("relu7", lambda c, h: relu(h), hs)
    hs = step("dropout7", lambda c, h: net.drop(h), hs)
    h = cross("copy before fc8", hs)[0]                       # (1, 4096) on cpu:0
    logits = net.fc8(h)                                       # (1, 1000) on cpu:0
    stages.append(Stage("fc8", [logits]))
    plot(stages[-1])
    probs = F.softmax(logits)
    stages.append(Stage("softmax", [probs]))
    plot(stages[-1])

# %% [markdown]
# The steps above are `AlexNet.forward` written out: the same weights give
# the same logits. An untrained net spreads its probability almost evenly
# over the 1000 classes.

# %%
with minidl.no_grad():
    expected = net(Tensor(x, device="cpu:0"))
np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
print(f"top probability {probs.numpy().max():.5f} (uniform: {1 / 1000})")
for s in stages:                               # what `alexnet inspect` prints, stage by stage
    a = s.outputs[0].numpy()
    print(f"{s.name:18s} {str(tuple(s.outputs[0].shape)):18s} on {', '.join(s.devices):12s} "
          f"mean {a.mean():+.3g}  std {a.std():.3g}  zeros {np.mean(a == 0):.0%}")

# %% [markdown]
# The statistics show Section 5's initialisation at work: conv2, conv4, conv5,
# fc6 and fc7 start with biases of 1 (the paper: this gives the ReLUs
# positive inputs early in training), so after conv4 hardly any unit is zero, while half of conv1's and conv3's (biases 0) are cut off.
# Dropout at test time halves every value.

# %% [markdown]
# ## Checking a layer's gradient
#
# Every op's backward is tested against central differences in float64
# (`minidl.gradcheck`, [autograd.md](autograd.md#checking-a-backward)). Here
# the convolution of the two-column net in miniature: groups=2 (each half of
# the kernels reads half of the channels, as each column of conv2 does),
# stride 2, padding 1, on a 2-image batch small enough to difference every
# element of x, W and b.

# %%
rng = np.random.default_rng(0)
xs = rng.standard_normal((2, 4, 7, 7))                        # (N, C, H, W)
ws = rng.standard_normal((6, 2, 3, 3))                        # (K, C / groups, 3, 3)
bs = rng.standard_normal(6)
error = minidl.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, pad=1, groups=2), xs, ws, bs)
print(f"conv2d, groups=2: worst relative error {error:.1e}")
gradcheck_ok = bool(error < 1e-6)
assert gradcheck_ok, f"conv2d's backward disagrees with finite differences: {error:.1e}"
