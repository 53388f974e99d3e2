"""Validate the train block, and check the dataset it names against the network's input."""

from __future__ import annotations

from wirelang import train_config
from wirelang.diagnostics import Reporter
from wirelang.ir import core
from wirelang.methods import WIRINGS


def check_train(net: core.Network, rep: Reporter) -> core.Network:
    spans = net.train_spans
    try:
        cfg = train_config.validate(net.train)
    except train_config.SettingError as err:
        top = err.key.split(".")[0]
        span = (
            spans.get(err.key)
            or spans.get(
                "phase2." + err.key.split(".")[1] if top == "phase2" and "." in err.key else ""
            )
            or spans.get(top)
            or net.span
        )
        rep.error(span, err.message, err.hint)
        return net
    data = cfg.data.name
    if data in train_config.DATASETS and data != "synthetic":
        c, h, w, classes = train_config.DATASETS[data]
        span = spans.get("data", net.span)
        fixed_size = data not in ("imagenet",)
        if net.input.channels != c or (
            fixed_size and (net.input.height, net.input.width) != (h, w)
        ):
            want = f"{c}x{h}x{w}" if fixed_size else f"{c} channels"
            rep.error(
                span,
                f"`{data}` gives {want} images but the network's input is {net.input}",
                f"write `input image({c}, {h}, {w})`" if fixed_size else None,
            )
        if net.classes != classes:
            rep.error(
                span,
                f"`{data}` has {classes} classes but the network declares {net.classes}",
                f"write `classes {classes}`",
            )
    two_phase = [g for g in net.graphs() if WIRINGS[g.wiring.method].two_phase]
    methods = {g.wiring.method for g in two_phase}
    if len(methods) > 1:
        rep.error(
            two_phase[-1].wiring.span,
            "one network can use `lottery_one_shot` or `fine_tune`, not both",
        )
    if cfg.phase2 is not None and not two_phase:
        rep.error(
            spans.get("phase2", net.span),
            "`phase2` is only used by `lottery_one_shot` and `fine_tune` wirings",
        )
    return net.model_copy(update={"train": cfg.model_dump(mode="json")})
