"""`init`: how a graph's edge weights are drawn, with the authors' scale as the default."""

from __future__ import annotations

import math

import pytest
import torch

from wirelang.backend.api import compile_network
from wirelang.diagnostics import SpecError
from wirelang.export.frozen import frozen_wire
from wirelang.fmt import format_text
from wirelang.frontend import build

SPEC = """\
network small {{
  input image(1, 8, 8)
  classes 3
  stem {{
    conv(4, k=3)
  }}
  graph net {{
    nodes a[4] input op(instancenorm, relu, dwconv(k=3))
    nodes h1[30], h2[20] op(instancenorm, relu, dwconv(k=3))
    nodes out[6] output
    edges forward(a, h1, h2, out)
    budget 40
    wiring {wiring}
    {init}
  }}
  head {{
    avgpool, linear(classes)
  }}
}}
"""


def spec(tmp_path, init: str = "", wiring: str = "dnw"):
    path = tmp_path / "small.wire"
    path.write_text(SPEC.format(init=init, wiring=wiring))
    return path


def edge_weights(net) -> torch.Tensor:
    torch.manual_seed(0)
    model = compile_network(net)
    return torch.cat(
        [p.detach().flatten() for n, p in model.named_parameters() if ".wiring.w_" in n]
    )


def test_default_is_uniform_over_the_sending_nodes(tmp_path):
    net = build(spec(tmp_path))
    g = net.graphs()[0]
    # a, h1 and h2 send; out does not
    assert (g.init.kind, g.init.fan) == ("uniform", 4 + 30 + 20)
    w = edge_weights(net)
    bound = 1 / math.sqrt(54)
    assert float(w.abs().max()) <= bound
    assert float(w.abs().max()) > 0.95 * bound  # fills the interval, not a narrower one
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.1 * bound


@pytest.mark.parametrize("wiring", ["dnw", "random", "complete"])
def test_every_wiring_method_starts_from_the_same_weights(tmp_path, wiring):
    dnw = edge_weights(build(spec(tmp_path)))
    assert torch.equal(edge_weights(build(spec(tmp_path, wiring=wiring))), dnw)


def test_explicit_fan_normal_and_kaiming(tmp_path):
    assert float(edge_weights(build(spec(tmp_path, "init uniform(fan=10000)"))).abs().max()) <= 0.01
    w = edge_weights(build(spec(tmp_path, "init normal(std=0.5)")))
    assert abs(float(w.std()) - 0.5) < 0.05
    # kaiming: std sqrt(2 / mean in-degree at the budget), 40 edges over 30 + 20 + 6 receivers,
    # an in-degree below one counted as one
    w = edge_weights(build(spec(tmp_path, "init kaiming")))
    assert abs(float(w.std()) - math.sqrt(2)) < 0.1


def test_unknown_init_is_a_located_error(tmp_path):
    # the rendered message with its hint: specs/errors/unknown_init.expected
    with pytest.raises(SpecError) as err:
        build(spec(tmp_path, "init unifrom"))
    assert str(err.value).endswith("small.wire:14:10: unknown init `unifrom`")


def test_two_inits_are_an_error(tmp_path):
    with pytest.raises(SpecError) as err:
        build(spec(tmp_path, "init kaiming\n    init uniform"))
    assert "a graph has one `init`" in str(err.value)


def test_fmt_keeps_init(tmp_path):
    text = SPEC.format(init="init   normal( std = 0.25 )", wiring="dnw")
    assert "    init normal(std=0.25)\n" in format_text(text, "x.wire")


def test_frozen_export_states_the_init(tmp_path):
    net = build(spec(tmp_path, "init normal(std=0.25)"))
    model = compile_network(net)
    text = frozen_wire(net, model)
    assert "    init normal(std=0.25)\n" in text
    frozen = tmp_path / "frozen.wire"
    frozen.write_text(text)
    g = build(frozen).graphs()[0]
    assert (g.init.kind, g.init.std) == ("normal", 0.25)
