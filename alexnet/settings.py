"""The one check of a training run's settings, wherever they come from.

`alexnet train` reads each option through `argument(name)` (an argparse type), and
a checkpoint's saved recipe and model are checked by `check(name, value)` when a run
is resumed or a checkpoint loaded (`Recipe.check`, `AlexNetConfig.check`): the same
rule and the same words, so a value the command line refuses is refused in a
checkpoint too. Light on imports: the command line builds its parser from it.
"""
from __future__ import annotations

import math


def _number(kind, ok, what):
    """A rule for an int or float setting: (parse text, check value, what it expects)."""
    def valid(v):
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
            return False
        return math.isfinite(v) and ok(v)
    return kind, valid, what


def _ints(count, what):
    """A rule for `count` comma-separated whole numbers >= 1 (None: any count >= 1)."""
    def parse(text):
        return tuple(int(v.strip()) for v in str(text).split(","))

    def valid(v):
        return (isinstance(v, (tuple, list)) and len(v) >= 1 and (count is None or len(v) == count)
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in v))
    return parse, valid, what


def _choice(*allowed):
    return str, lambda v: v in allowed, f"one of {', '.join(allowed)}"


# name: (parse the command line's text, is a value valid, what is expected)
RULES = {
    # the recipe (alexnet.imagenet_train.Recipe, Section 5)
    "batch_size": _number(int, lambda v: v >= 1, "a whole number >= 1"),
    "lr": _number(float, lambda v: v > 0, "a positive finite number"),
    "momentum": _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": _number(float, lambda v: v >= 0, "a finite number >= 0"),
    "epochs": _number(int, lambda v: v >= 1, "a whole number >= 1"),
    "schedule": _choice("plateau", "2012"),
    "patience": _number(int, lambda v: v >= 0, "a whole number >= 0"),
    "threshold": _number(float, lambda v: v >= 0, "a finite number >= 0"),
    "max_reductions": _number(int, lambda v: v >= 0, "a whole number >= 0"),
    "milestones": _ints(None, "increasing whole numbers >= 1, e.g. 23,51,78"),
    "color_std": _number(float, lambda v: v >= 0, "a finite number >= 0 (0: no colour noise)"),
    "seed": _number(int, lambda v: v >= 0, "a whole number >= 0"),
    # the model (alexnet.model.AlexNetConfig)
    "input_size": _number(int, lambda v: v >= 1, "a whole number >= 1"),
    "conv_channels": _ints(5, "five whole numbers >= 1, the kernels of conv1..conv5, "
                              "e.g. 8,12,16,12,8"),
    "fc_features": _number(int, lambda v: v >= 1, "a whole number >= 1"),
    "weight_std": _number(float, lambda v: v > 0, "a positive finite number"),
}


def check(name, value, where=""):
    """`value` if it is a valid `name`, else ValueError saying what was expected and found
    (`where`: the file or object it came from, put first)."""
    _, valid, what = RULES[name]
    ok = valid(value)
    if ok and name == "milestones":
        ok = list(value) == sorted(set(value))
    if not ok:
        raise ValueError(f"{where}{name}: expected {what}, found {value!r}")
    return value


def argument(name):
    """The argparse type of the option for setting `name`: the text parsed, then `check`."""
    import argparse
    parse = RULES[name][0]

    def read(text):
        try:
            value = parse(text)
        except ValueError:
            value = text
        try:
            return check(name, value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {RULES[name][2]}, found {text!r}") from None
    read.__name__ = name
    return read
