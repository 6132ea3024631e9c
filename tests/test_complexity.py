"""models.complexity: MACs against FlopCounterMode, params, activations, receptive fields."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.models.complexity import complexity, flop_counter_macs
from convzoo.models.layers.arithmetic import receptive_field
from convzoo.models.layers.conv import ConvNormAct


class Residual(nn.Module):
    """stem 3x3 -> [3x3/2 -> 3x3] + 1x1/2 shortcut -> avgpool 2 -> x + 3x3(x).  RF 3, 9, 11, 19."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.shortcut = nn.Conv2d(c, c, 1, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.conv3 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.stem(x))
        x = self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))
        x = self.pool(x)
        y = self.conv3(x)
        y += x  # in-place residual add
        return y


class TwoBranch(nn.Module):
    """stem 3x3 -> cat(1x1 | 5x5 | avgpool 3x3) -> 3x3.  RF 3, then 3 | 7 | 5, then 9."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.b1 = nn.Conv2d(c, c, 1)
        self.b5 = nn.Conv2d(c, c, 5, padding=2)
        self.bp = nn.AvgPool2d(3, stride=1, padding=1)
        self.head = nn.Conv2d(3 * c, c, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.b1(x), self.b5(x), self.bp(x)], dim=1))


class Shared(nn.Module):
    """One conv applied twice: two rows, its parameters counted once."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


def empirical_rf(net, channels=3, size=64):
    """Extent of nonzero input gradient of the centre output pixel, with positive constant weights."""
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.1)
    net.eval()
    x = torch.ones(1, channels, size, size, requires_grad=True)
    y = net(x)
    y[0, :, y.shape[-2] // 2, y.shape[-1] // 2].sum().backward()
    g = x.grad[0].abs().sum(0)

    def extent(v):
        nz = v.nonzero()
        return (nz.max() - nz.min() + 1).item()

    return max(extent(g.sum(1)), extent(g.sum(0)))


def row(report, name):
    return next(r for r in report.rows if r.name == name)


# --- MACs -------------------------------------------------------------------------------------

def test_conv_macs_follow_the_formula():
    r = complexity(nn.Conv2d(3, 8, 3, padding=1, groups=1), (3, 32, 32))
    assert r.total_macs == 32 * 32 * 3 * 3 * 3 * 8
    r = complexity(nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4), (8, 16, 16))
    assert r.total_macs == 8 * 8 * 9 * (8 // 4) * 16
    r = complexity(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2), (8, 5, 5))
    assert r.total_macs == 5 * 5 * 9 * 8 * 4 // 2 and r.rows[0].output_shape == (4, 10, 10)
    r = complexity(nn.Linear(6, 5), (7, 6))  # leading dims multiply
    assert r.total_macs == 7 * 6 * 5


NETS = {
    "convnormact": lambda: (ConvNormAct(3, 8), (3, 16, 16)),
    "convnormact_grouped_strided": lambda: (ConvNormAct(8, 16, 3, stride=2, groups=4), (8, 16, 16)),
    "depthwise_separable": lambda: (nn.Sequential(ConvNormAct(8, 8, groups=8), ConvNormAct(8, 16, 1)), (8, 16, 16)),
    "dilated": lambda: (nn.Conv2d(4, 6, 3, padding=2, dilation=2), (4, 16, 16)),
    "strided_5x5": lambda: (nn.Conv2d(3, 6, 5, stride=2, padding=2), (3, 17, 17)),
    "conv_transpose": lambda: (nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, groups=2), (6, 8, 8)),
    "conv1d": lambda: (nn.Sequential(nn.Conv1d(5, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 5, groups=2)), (5, 40)),
    "linear": lambda: (nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.ReLU(), nn.Linear(10, 3)), (3, 4, 4)),
    "residual": lambda: (Residual(), (3, 16, 16)),
    "concat": lambda: (TwoBranch(), (3, 16, 16)),
    "shared": lambda: (Shared(), (4, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_macs_agree_with_flop_counter(name):
    net, size = NETS[name]()
    expected = flop_counter_macs(net, size)
    r = complexity(net, size)
    assert expected > 0
    assert abs(r.total_macs - expected) <= 0.01 * expected
    assert sum(x.macs for x in r.rows) == r.total_macs  # every counted op ran inside a leaf


def test_functional_ops_outside_leaves_reach_the_total():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(nn.functional.conv2d(x, self.weight, padding=1))

    net = Functional()
    r = complexity(net, (3, 8, 8))
    assert r.total_macs == r.other_macs == flop_counter_macs(net, (3, 8, 8)) == 8 * 8 * 9 * 3 * 4
    assert "outside leaf modules" in r.table()


def test_im2col_conv_counts_matmul_and_unfold_window():
    class Im2col(nn.Module):  # a 3x3 conv as unfold + matmul, as in models/layers/reference.py
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 2 * 9))
            self.act = nn.ReLU()

        def forward(self, x):  # (N, 2, 8, 8)
            cols = nn.functional.unfold(x, 3, padding=1)  # (N, 18, 64)
            return self.act((self.weight @ cols).view(x.shape[0], 4, 8, 8))

    net = nn.Sequential(Im2col(), nn.Conv2d(4, 4, 3, padding=1))
    r = complexity(net, (2, 8, 8))
    assert r.total_macs == flop_counter_macs(net, (2, 8, 8)) == 64 * 18 * 4 + 64 * 9 * 4 * 4
    assert [(x.rf_size, x.rf_jump) for x in r.rows] == [(3, 1), (5, 1)]


# --- params, shapes, activations, modes -------------------------------------------------------

def test_params_shapes_and_reused_modules():
    net = Shared()
    r = complexity(net, (4, 8, 8))
    assert [x.name for x in r.rows] == ["conv", "conv"]
    assert r.total_params == sum(p.numel() for p in net.parameters()) == 4 * 4 * 9 + 4
    assert all(x.params == r.total_params for x in r.rows)
    assert r.rows[0].output_shape == (4, 8, 8) and r.rows[0].type == "Conv2d"


def test_batch_scales_macs_and_activations_not_shapes():
    net = ConvNormAct(3, 8)
    one, two = complexity(net, (3, 8, 8)), complexity(net, (3, 8, 8), batch_size=2)
    assert two.total_macs == 2 * one.total_macs
    assert two.total_activation_bytes == 2 * one.total_activation_bytes
    assert [x.output_shape for x in two.rows] == [x.output_shape for x in one.rows]


def test_activation_bytes_skip_inplace_outputs():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Identity(), nn.Flatten())
    r = complexity(net, (3, 8, 8))
    per_tensor = 8 * 8 * 8 * 4
    assert [x.activation_bytes for x in r.rows] == [per_tensor] * 4
    assert r.total_activation_bytes == per_tensor  # ReLU in place, Identity and Flatten view


def test_restores_modes_and_leaves_running_stats_alone():
    net = ConvNormAct(3, 8)
    net.train()
    net.norm.eval()  # a frozen norm must stay frozen
    mean = net.norm.running_mean.clone()
    complexity(net, (3, 8, 8))
    flop_counter_macs(net, (3, 8, 8))
    assert net.training and net.conv.training and not net.norm.training
    assert torch.equal(net.norm.running_mean, mean)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="batch_size"):
        complexity(nn.Conv2d(3, 3, 1), batch_size=0)
    with pytest.raises(ValueError, match="input_size"):
        complexity(nn.Conv2d(3, 3, 1), (3, 0, 8))


# --- receptive field --------------------------------------------------------------------------

@pytest.mark.parametrize("layers, size, jump", [
    ([ConvNormAct(3, 4), ConvNormAct(4, 4), ConvNormAct(4, 4)], 7, 1),
    ([ConvNormAct(3, 4, stride=2), ConvNormAct(4, 4)], 7, 2),
    ([ConvNormAct(3, 4, dilation=2)], 5, 1),
    ([ConvNormAct(3, 4, (3, 1)), ConvNormAct(4, 4, (1, 3))], 3, 1),  # separable: 3 per dim, not 5
])
def test_known_receptive_fields(layers, size, jump):
    r = complexity(nn.Sequential(*layers), (3, 32, 32))
    assert (r.rf_size, r.rf_jump, r.rf_global) == (size, jump, False)
    assert (r.rows[-1].rf_size, r.rows[-1].rf_jump) == (size, jump)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 3, 5]), st.integers(1, 2), st.integers(1, 2)), min_size=1, max_size=4))
def test_chains_match_the_recurrence(spec):
    convs = [nn.Conv2d(2, 2, k, stride=s, dilation=d, padding=(k - 1) // 2 * d) for k, s, d in spec]
    r = complexity(nn.Sequential(*convs), (2, 64, 64))
    expected = receptive_field(spec)
    assert [(x.rf_size, x.rf_jump) for x in r.rows] == [(e.size, e.jump) for e in expected]


def test_residual_net_matches_empirical_receptive_field():
    r = complexity(Residual(), (3, 64, 64))
    assert {n: (row(r, n).rf_size, row(r, n).rf_jump) for n in ("stem", "conv2", "shortcut", "pool")} == {
        "stem": (3, 1), "conv2": (9, 2), "shortcut": (3, 2), "pool": (11, 4)}
    assert (r.rf_size, r.rf_jump) == (19, 4) == (empirical_rf(Residual()), 4)


def test_concat_net_matches_empirical_receptive_field():
    r = complexity(TwoBranch(), (3, 64, 64))
    assert [row(r, n).rf_size for n in ("b1", "b5", "bp", "head")] == [3, 7, 5, 9]
    assert r.rf_size == empirical_rf(TwoBranch()) == 9


def test_upsampling_gives_fractional_jumps():
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear"),
                        nn.Conv2d(3, 3, 3, padding=1))
    r = complexity(net, (3, 64, 64))
    assert (r.rows[1].rf_size, r.rows[1].rf_jump) == (4, 0.5)
    assert (r.rf_size, r.rf_jump) == (5, 0.5) == (empirical_rf(net), 0.5)


def test_global_pooling_flatten_and_squeeze_excite_are_global():
    class SE(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x.mean((2, 3), keepdim=True))

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SE(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2))
    r = complexity(net, (3, 24, 16))
    assert [x.rf_global for x in r.rows] == [False, True, True, True, True, True]
    assert (r.rf_size, r.rf_jump, r.rf_global) == (24, 24, True)
    assert r.max_local_rf == 3
    plain = complexity(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)), (3, 16, 16))
    assert plain.rows[1].rf_global and plain.rows[1].rf_size == 16


# --- report formatting and CLI ----------------------------------------------------------------

def test_table_and_dicts():
    r = complexity(Residual(), (3, 64, 64))
    text = r.table()
    assert str(r) == text
    for name in ("stem", "conv1", "shortcut", "total"):
        assert name in text
    assert f"{r.total_params:,}" in text.splitlines()[-1] and "M" in text  # MACs as M
    assert len(r.rows) == 9 and "... 7 more rows" in r.table(max_rows=2) and "conv2" not in r.table(max_rows=2)
    assert len({len(line) for line in r.table().splitlines()[:2]}) == 1  # header as wide as the rule
    d = r.to_dicts()[0]
    assert d["name"] == "stem" and d["rf_size"] == 3 and set(d) >= {"macs", "params", "activation_bytes"}
