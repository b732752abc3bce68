"""sasa_viz.inspection.statistics: per-head averages checked against answers known in advance
(uniform heads, heads forced onto one offset) and against a per-pixel recomputation
from `trace`, one image at a time."""
import math

import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.attention.stem import AttentionStem
from sasa_viz.inspection import statistics
from sasa_viz.inspection.statistics import (HeadStats, describe_layer, head_statistics,
                                            layer_statistics, most_selective_pixel,
                                            most_telling, position_share, statistics_table)
from sasa_viz.models.catalogue import attention_layers
from sasa_viz.models.data import SAMPLE_PATH, Cifar10, held_out_split, load_sample, to_float
from sasa_viz.models.pretrained import list_pretrained, load_pretrained


def positive_images(n, height, width, seed=0):
    """Float images in [0.5, 1]: every pixel's channel sum is at least 1.5."""
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.5 * torch.rand(n, 3, height, width, generator=g)


def bowl_layer(in_channels, kernel_size, targets, steepness=20.0, padding="zeros"):
    """A layer whose head h attends to window offset targets[h] = (dy, dx).

    Every query channel is the sum of the input channels (positive for positive input),
    keys are tiny, and the relative embeddings are -steepness * (offset - target)^2, so
    the position logit is a bowl peaked at the target. targets[h] = None: that head's
    query is 0, so its weights are uniform."""
    heads = len(targets)
    layer = SelfAttention2d(in_channels, 2 * heads, kernel_size, heads=heads,
                            padding=padding, position="relative")
    steps = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
    with torch.no_grad():
        layer.query.weight.fill_(1.0)
        layer.key.weight.mul_(0.01)
        for h, target in enumerate(targets):
            if target is None:
                layer.query.weight[2 * h:2 * h + 2] = 0
                continue
            dy, dx = target                    # head_dim 2: one row and one column channel
            layer.rel_row[h, 0] = -steepness * (steps - dy) ** 2
            layer.rel_col[h, 0] = -steepness * (steps - dx) ** 2
    return layer


def neighbours(K, H, W, i, j):
    """The (dy, dx) offsets of pixel (i, j)'s window that fall inside an H x W map."""
    r = K // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if 0 <= i + dy < H and 0 <= j + dx < W]


# --- known answers ---------------------------------------------------------------------------

def test_uniform_heads_match_counts_of_valid_neighbours():
    """q = 0: every logit is 0, each pixel spreads evenly over its n valid neighbours:
    entropy ln n, largest weight 1/n, distance the mean neighbour distance, share 0."""
    model = nn.Sequential(SelfAttention2d(3, 4, kernel_size=3, heads=2),
                          SelfAttention2d(4, 6, kernel_size=7, heads=3, position="absolute"))
    for layer in attention_layers(model).values():
        nn.init.zeros_(layer.query.weight)
    images = torch.randint(0, 256, (5, 3, 5, 6), dtype=torch.uint8)
    stats = head_statistics(model, images, batch_size=2)          # batches of 2, 2, 1

    assert [(s.layer, s.head) for s in stats] == [("0", 0), ("0", 1),
                                                  ("1", 0), ("1", 1), ("1", 2)]
    for s in stats:
        K, (H, W) = s.kernel_size, s.map_size
        assert (H, W) == (5, 6) and s.images == 5 and s.local == (K == 3)
        windows = [neighbours(K, H, W, i, j) for i in range(H) for j in range(W)]
        entropy = sum(math.log(len(n)) for n in windows) / len(windows)
        largest = sum(1 / len(n) for n in windows) / len(windows)
        distance = sum(sum(math.hypot(dy, dx) for dy, dx in n) / len(n)
                       for n in windows) / len(windows)
        assert s.entropy == pytest.approx(entropy, rel=1e-5)
        assert s.uniform_entropy == pytest.approx(entropy, rel=1e-6)
        assert s.entropy_fraction == pytest.approx(entropy / math.log(K * K), rel=1e-5)
        assert s.largest_weight == pytest.approx(largest, rel=1e-5)
        assert s.distance == pytest.approx(distance, rel=1e-5)
        assert s.position_share == 0.0                            # the logits never vary


def test_a_head_forced_onto_one_offset():
    """Relative embeddings that single out (dy, dx): entropy ~0, largest weight ~1, the
    distance is |(dy, dx)| at every pixel ("zeros" padding: also at the border) and the
    logits' variation is nearly all position."""
    targets = [(-1, 2), (2, 2), (0, 0)]
    model = nn.Sequential(bowl_layer(3, 5, targets))
    stats = head_statistics(model, positive_images(3, 8, 8), batch_size=2)
    for s, (dy, dx) in zip(stats, targets):
        assert s.entropy < 1e-6 and s.entropy_fraction < 1e-6
        assert s.largest_weight == pytest.approx(1.0, abs=1e-6)
        assert s.distance == pytest.approx(math.hypot(dy, dx), abs=1e-5)
        assert s.position_share == pytest.approx(1.0, abs=1e-3)
        assert s.uniform_entropy == pytest.approx(math.log(25))    # zeros: all K*K take part


def test_without_position_the_share_is_exactly_zero():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=3, heads=2, position="none"))
    for s in head_statistics(model, torch.rand(2, 3, 6, 5)):
        assert s.position_share == 0.0
        assert 0 < s.entropy < math.log(9)


def test_position_share_by_hand():
    """One pixel of a 3x3 map (the centre: all 9 neighbours valid)."""
    position = torch.arange(9.0).view(1, 1, 3, 3, 1, 1)         # 3a + b ...
    row = torch.tensor([0.0, 3.0, 6.0]).view(1, 1, 3, 1, 1)      # ... = row part a ...
    col = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 3, 1, 1)      # ... + column part b
    valid = torch.ones(3, 3, 1, 1, dtype=torch.bool)
    # Var(p) / (Var(c) + Var(p)) with c = 2p: 1 / (4 + 1)
    assert position_share(2 * position, row, col, valid).item() == pytest.approx(0.2)
    # c = -p/2 pulls against position: the whole logit p/2 varies a quarter as much as
    # p, so a share of its variance would be 4; of the two parts' variation it is 0.8
    assert position_share(-position / 2, row, col, valid).item() == pytest.approx(0.8)
    # constant content: all the variation is position's; no position variation: none
    assert position_share(torch.full_like(position, 5.0), row, col, valid).item() == 1.0
    assert position_share(position, 0 * row, 0 * col, valid).item() == 0.0
    # only three neighbours valid: variance over those (content 0, 2, 6; position 0, 1, 3)
    valid[:] = False
    valid[0, 0] = valid[0, 1] = valid[1, 0] = True
    assert position_share(2 * position, row, col, valid).item() == pytest.approx(0.2)


def test_position_share_never_leaves_0_to_1_on_a_trained_model():
    """Where content and position pull against each other the old ratio (of the whole
    logit's variance) went above 1 on the shipped models; this one cannot."""
    model = load_pretrained("sasa-full-cifar10", device="cpu")
    traced = trace(model, to_float(load_sample(SAMPLE_PATH).images[:2]))
    for layer in traced.layers.values():
        if layer.position == "none":
            continue
        share = position_share(layer.logits_content[None], layer.logits_row[None, :, :, 0],
                               layer.logits_col[None, :, 0], layer.valid)
        assert share.min() >= 0 and share.max() <= 1, layer.name


# --- the batched path against a per-image recomputation from trace --------------------------

def mixed_model():
    torch.manual_seed(1)
    model = nn.Sequential(
        AttentionStem(3, 8, kernel_size=4, heads=2, pool=1),                 # blocks, padded
        SelfAttention2d(8, 8, kernel_size=3, heads=2, scaled=True),          # scaled logits
        SelfAttention2d(8, 8, kernel_size=5, heads=2),                       # relative, mask
        SelfAttention2d(8, 6, kernel_size=3, heads=3, padding="zeros", position="none"),
        SelfAttention2d(6, 6, kernel_size=3, heads=2, position="absolute", max_size=8),
        SelfAttention2d(6, 4, kernel_size=3, heads=2, padding="zeros"),      # relative, zeros
    ).eval()
    with torch.no_grad():
        for layer in attention_layers(model).values():
            layer.query.weight.mul_(3)                     # sharper than at initialisation
    return model


def per_pixel_from_trace(layer, head, row, col):
    """The four statistics of one pixel, from the trace's numbers, in float64."""
    px = layer.pixel(row, col)
    K = layer.kernel_size
    w = px.weights[head].double()
    entropy = -sum(float(p * math.log(p)) for p in w.flatten() if p > 0)
    top, left = px.origin                       # window cell [0, 0] is map pixel (top, left)
    distance = sum(float(w[a, b]) * math.hypot(top + a - row, left + b - col)
                   for a in range(K) for b in range(K))
    position = (px.logits_row[head] + px.logits_col[head]).double()[px.valid]
    content = px.logits_content[head].double()[px.valid]
    both = content.var(unbiased=False) + position.var(unbiased=False)
    share = float(position.var(unbiased=False) / both) if both > 0 else 0.0
    return entropy, float(w.max()), distance, share


def test_batched_statistics_equal_a_per_image_recomputation_from_trace():
    model = mixed_model()
    images = torch.rand(3, 3, 7, 6)
    stats = head_statistics(model, images, batch_size=2)

    expected = {}                                   # (layer, head) -> [sums of 4], count
    for n in range(len(images)):
        for name, layer in trace(model, images[n:n + 1]).layers.items():
            H, W = layer.size
            for head in range(layer.heads):
                sums = expected.setdefault((name, head), [0.0, 0.0, 0.0, 0.0, 0])
                for i in range(H):
                    for j in range(W):
                        for k, value in enumerate(per_pixel_from_trace(layer, head, i, j)):
                            sums[k] += value
                        sums[4] += 1

    assert [(s.layer, s.head) for s in stats] == list(expected)
    for s in stats:
        *sums, count = expected[(s.layer, s.head)]
        entropy, largest, distance, share = (x / count for x in sums)
        assert s.images == 3
        assert s.entropy == pytest.approx(entropy, rel=1e-4, abs=1e-6)
        assert s.largest_weight == pytest.approx(largest, rel=1e-4)
        assert s.distance == pytest.approx(distance, rel=1e-4)
        assert s.position_share == pytest.approx(share, rel=1e-3, abs=1e-6)
    no_position = {s.layer for s in stats if s.position_share == 0}
    assert no_position == {"0.attention", "3"}          # the block stem and position="none"


def test_one_traced_image_gives_the_batched_statistics_of_that_image():
    model = mixed_model()
    image = torch.rand(1, 3, 7, 6)
    batched = head_statistics(model, image)
    traced = [row for layer in trace(model, image).layers.values()
              for row in layer_statistics(layer)]
    assert [(s.layer, s.head) for s in traced] == [(s.layer, s.head) for s in batched]
    for one, many in zip(traced, batched):
        for field in ("entropy", "uniform_entropy", "largest_weight", "distance",
                      "position_share"):
            assert getattr(one, field) == pytest.approx(getattr(many, field), rel=1e-5,
                                                        abs=1e-7), (one.layer, field)


def test_model_mode_is_restored():
    model = mixed_model().train()
    head_statistics(model, torch.rand(1, 3, 5, 5))
    assert model.training


# --- what to show first ----------------------------------------------------------------------

def row(layer, head, fraction, local=True, share=0.5, kernel_size=7, ceiling=1.0):
    """ceiling: the uniform entropy as a fraction of ln K^2 (below 1 on small maps)."""
    log_k2 = math.log(kernel_size ** 2)
    return HeadStats(layer=layer, head=head, kernel_size=kernel_size,
                     map_size=(16, 16) if local else (4, 4), local=local, images=1,
                     entropy=fraction * log_k2, entropy_fraction=fraction,
                     uniform_entropy=ceiling * log_k2, largest_weight=0.1, distance=2.0,
                     position_share=share)


def test_most_telling_rule():
    stats = [row("a", 0, 0.9), row("a", 1, 0.6), row("b", 0, 0.6),
             row("c", 0, 0.7, kernel_size=3),        # fewer nats (1.54 < 2.34), larger share
             row("s", 0, 0.55, ceiling=0.7),        # smaller share of ln K^2, but 79% of uniform
             row("g", 0, 0.1, local=False), row("g", 1, 0.2, local=False)]
    assert most_telling(stats) == ("a", 1)          # ties: the earlier layer; global skipped
    only_global = [row("g", 0, 0.3, local=False), row("g", 1, 0.2, local=False)]
    assert most_telling(only_global) == ("g", 1)
    with pytest.raises(ValueError):
        most_telling([])


def test_most_telling_on_a_model_skips_a_sharper_global_layer():
    """Layer "0": a 9x9 window over a 6x6 map (global), both heads on one offset.
    Layer "2": a 3x3 window over the same map, head 0 uniform, head 1 a softer bowl."""
    first = bowl_layer(3, 9, [(0, 0), (1, 1)])
    nn.init.zeros_(first.value.weight)              # output 0, so the next input is 0.5
    model = nn.Sequential(first, nn.Sigmoid(), bowl_layer(4, 3, [None, (0, 1)], steepness=1))
    stats = {(s.layer, s.head): s for s in head_statistics(model, positive_images(2, 6, 6))}
    assert not stats["0", 0].local and stats["2", 0].local
    fractions = [stats[key].entropy_fraction for key in [("0", 0), ("2", 1), ("2", 0)]]
    assert fractions == sorted(fractions) and fractions[0] < 1e-6 < fractions[1]
    assert most_telling(list(stats.values())) == ("2", 1)


def test_most_selective_pixel():
    """Position-free heads with all-ones projections: q = k = 0 except at the one lit
    pixel, which attends only to itself; every other pixel is uniform."""
    layer = SelfAttention2d(3, 4, kernel_size=3, heads=2, position="none")
    with torch.no_grad():
        layer.query.weight.fill_(1.0)
        layer.key.weight.fill_(1.0)
    x = torch.zeros(1, 3, 6, 7)
    x[0, :, 3, 4] = 5.0
    traced = trace(nn.Sequential(layer), x).layers["0"]
    assert most_selective_pixel(traced, 0) == (3, 4)
    assert most_selective_pixel(traced, 1) == (3, 4)
    with pytest.raises(ValueError, match="head"):
        most_selective_pixel(traced, 2)
    # uniform everywhere: the first corner, which has the fewest neighbours
    zero = trace(nn.Sequential(layer), torch.zeros(1, 3, 6, 7)).layers["0"]
    assert most_selective_pixel(zero, 0) == (0, 0)


def test_describe_layer_names_a_blur_and_a_selective_head():
    blur = [row("a", 0, 0.97, share=0.1), row("a", 1, 0.99, share=0.2)]
    assert describe_layer(blur).startswith("Nearly uniform")
    assert "7×7 blur" in describe_layer(blur)
    sharp = [row("b", 0, 0.97, share=0.1), row("b", 1, 0.4, share=0.8)]
    sharp[1].largest_weight, sharp[1].distance = 0.513, 1.26
    text = describe_layer(sharp)
    assert text.startswith("Head 1 is the most selective: on average 51% of its attention "
                           "goes to a single neighbour, 1.3 feature pixels away.")
    assert "Head 1's logits vary mostly with position: q·r makes 80% of" in text
    assert "globally" in describe_layer([row("g", 0, 0.3, local=False)])
    with pytest.raises(ValueError, match="one layer"):
        describe_layer(blur + sharp)


def test_describe_layer_says_nothing_about_position_for_a_blur():
    """A head whose entropy is at the uniform ceiling has logits that barely vary: its
    position share, however large, is not a statement about it."""
    blur = [row("a", 0, 0.99, share=0.9), row("a", 1, 0.97, share=0.7)]
    assert "position" not in describe_layer(blur)
    mixed = [row("a", 0, 0.99, share=0.9), row("a", 1, 0.5, share=0.6)]
    assert "Head 1's logits vary mostly with position" in describe_layer(mixed)
    assert "Head 0" not in describe_layer(mixed)
    assert "position" not in describe_layer([row("a", 0, 0.5, share=0.49)])


# --- the table -------------------------------------------------------------------------------

def test_statistics_table():
    stats = [row("a", 0, 0.9, share=0.0123456), row("a", 1, 0.5, share=0.9),
             row("b", 0, 0.8, share=0.7), row("b", 1, 0.76, share=0.1),
             row("g", 0, 0.1, local=False, share=0.8),
             row("u", 0, 0.97, share=0.95)]          # nearly uniform: not position-driven
    stats[0].entropy = 1.23456
    text = statistics_table(stats)
    lines = text.splitlines()
    assert lines[0].startswith("| layer | head | map |") and lines[1].startswith("| ---")
    table = [line for line in lines[2:] if line.startswith("| ")]
    assert len(table) == len(stats)
    assert table[0].split(" | ")[:5] == ["| a", "0", "16×16", "7", "1.23"]
    assert "| 90.0% |" in table[0] and "| 0.0123 |" in table[0]
    assert "50.0%" in table[1] and "4×4 (global)" in table[4]
    position = text[text.index("position-driven"):].splitlines()
    assert [line for line in position if line.startswith("- ")][:3] == [
        "- a head 1: 0.900", "- g head 0: 0.800", "- b head 0: 0.700"]
    selective = text[text.index("Selective heads"):]
    assert "- a: yes, head 1" in selective
    assert "- b: no (lowest 76.0%, head 1)" in selective
    assert "- g" not in selective                    # its map fits inside the window


# --- the command line ------------------------------------------------------------------------

@pytest.fixture
def loaded_models(monkeypatch):
    """The models the command line loads (the shipped files may change under a run)."""
    models = []

    def load(*args, **kwargs):
        models.append(real(*args, **kwargs))
        return models[-1]

    real = statistics.load_pretrained
    monkeypatch.setattr(statistics, "load_pretrained", load)
    return models


@pytest.mark.skipif("sasa-cifar10" not in list_pretrained(), reason="no shipped sasa-cifar10")
def test_command_line_on_the_sample(capsys, loaded_models):
    statistics.main(["--model", "sasa-cifar10", "--sample", "--limit", "8", "--device", "cpu"])
    out = capsys.readouterr().out
    assert out.startswith("sasa-cifar10: attention statistics over the first 8 (32×32) "
                          "of the committed sample")
    heads = sum(layer.heads for layer in attention_layers(loaded_models[0]).values())
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + heads                   # the header and one row per head
    assert "Look first at " in out


@pytest.mark.skipif("sasa-cifar10" not in list_pretrained(), reason="no shipped sasa-cifar10")
def test_command_line_uses_the_training_split(capsys, monkeypatch, loaded_models, tmp_path):
    (tmp_path / "airplane").mkdir()                # a folder the --data check accepts
    g = torch.Generator().manual_seed(0)
    fake = Cifar10(images=torch.randint(0, 256, (120, 3, 32, 32), dtype=torch.uint8,
                                        generator=g),
                   labels=torch.arange(120) % 10, classes=list("0123456789"),
                   source_sha256="fake")
    seen = []

    def measure(model, images, batch_size):        # keep the images, skip the model run
        seen.append(images)
        return [row("a", 0, 0.5)]

    monkeypatch.setattr(statistics, "load_cifar10", lambda path: fake)
    monkeypatch.setattr(statistics, "head_statistics", measure)
    statistics.main(["--model", "sasa-cifar10", "--data", str(tmp_path), "--device", "cpu"])
    info = loaded_models[0].pretrained
    _, val_idx = held_out_split(120, info["val_size"], info["seed"], info.get("limit"))
    assert torch.equal(seen[0], fake.images[val_idx]) and len(val_idx) == 12
    assert "over 12 images" in capsys.readouterr().out


def test_command_line_needs_one_source():
    with pytest.raises(SystemExit):
        statistics.main(["--model", "sasa-cifar10"])
    with pytest.raises(SystemExit):
        statistics.main(["--model", "sasa-cifar10", "--sample", "--data", "x"])
