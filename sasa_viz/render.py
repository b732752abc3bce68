"""Render the explorer's figures for one pixel without a browser, for slides.

    python -m sasa_viz.render photo.jpg --model sasa-cifar10 --layer stages.0.0.spatial \\
        --pixel 8 8 --out fig.png
    python -m sasa_viz.render photo.jpg --figure weights --size 64 --pixel 20 30 --out w.png
    sasa-viz-render photo.jpg --untrained --model sasa-full-cifar10 --out slides/stem.png

--pixel is a feature pixel (row, column) of the chosen layer's map. The figures are
`sasa_viz.drawing.figures`, the ones the app offers for download. Every one of them is about an
attention layer: a model without attention (conv-cifar10, conv-resnet26, ...) has
nothing to draw, and the command names its attention twins instead, whose `--figure
kernels` shows the convolution's kernel beside attention's. --size is the working
resolution, 8 to 128 pixels on the longer side (`images.MIN_WORKING_SIZE`,
`MAX_WORKING_SIZE`); a size outside that range is clamped, and the command says so.
The folder of --out is made when missing. A mistake (an unknown model or layer, a pixel
off the map, a missing or unreadable image) ends the command with one line saying what
is wrong, and exit status 1 (2 for arguments refused as they are parsed: an unknown
model, a negative --head, an --out format matplotlib cannot write, ...).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from sasa_viz.choices import ModelChoice, conv_twin, load_model
from sasa_viz.cli import (NON_NEGATIVE_INT, POSITIVE_INT, Parser, figure_file, model_name,
                          one_line_errors)
from sasa_viz.drawing import figures, images
from sasa_viz.drawing.images import MAX_WORKING_SIZE, MIN_WORKING_SIZE
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import trace
from sasa_viz.models.catalogue import attention_layers, entry, list_models
from sasa_viz.models.pretrained import create

FIGURES = ("pixel", "weights", "logits", "heads", "kernels")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, each argument checked as it is parsed."""
    p = Parser("render", description="Render the explorer's figures for one pixel.")
    p.add_argument("image", help="an image file (PNG, JPEG, WebP, BMP, GIF)")
    p.add_argument("--model", default="sasa-cifar10", type=model_name(list_models()),
                   metavar="NAME", help="a catalogue model (default: sasa-cifar10)")
    p.add_argument("--untrained", action="store_true", help="the architecture, untrained")
    p.add_argument("--layer", help="attention layer name (default: the first)")
    p.add_argument("--pixel", nargs=2, type=int, metavar=("ROW", "COL"),
                   help="feature pixel of the layer (default: the centre)")
    p.add_argument("--head", type=NON_NEGATIVE_INT, default=0)
    p.add_argument("--channel", type=NON_NEGATIVE_INT, default=0)
    p.add_argument("--size", type=int, default=32, help="working resolution (longer side), "
                   f"{MIN_WORKING_SIZE} to {MAX_WORKING_SIZE}")
    p.add_argument("--figure", choices=FIGURES, default="pixel")
    p.add_argument("--out", required=True, type=figure_file,
                   help="output PNG (its folder is made if missing)")
    p.add_argument("--dpi", type=POSITIVE_INT, default=150)
    return p.parse_args(argv)


def check_model(name: str, trained: bool) -> List[str]:
    """The model's attention layer names; ValueError when it has none, or when trained
    weights are asked for and none are shipped."""
    with torch.device("meta"):                  # no weights are made
        layers = list(attention_layers(create(name)))
    if not layers:
        twins = [n for n in list_models() if entry(n).conv_twin == name]
        hint = (f"; its attention twins ({', '.join(twins)}) draw this model's kernel "
                f"beside attention's with --figure kernels" if twins else "")
        raise ValueError(f"{name} has no attention layers, so there is no attention to "
                         f"draw{hint}.")
    if trained and entry(name).weights is None:
        shipped = ", ".join(list_models(trained=True)) or "none"
        raise ValueError(f"{name} has no shipped weights (shipped: {shipped}); add "
                         f"--untrained to draw the architecture with random weights.")
    return layers


def working_image(path: Path, size: int) -> Image.Image:
    """The image at the working resolution (`images.to_working_size`), saying on stderr
    when `size` was outside MIN_WORKING_SIZE..MAX_WORKING_SIZE and clamped."""
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    image = images.to_working_size(images.load_image(path.read_bytes(), path.name), size)
    used = max(image.size)                       # the longer side, as to_working_size sets
    if used != size:
        print(f"render: --size {size} is outside {MIN_WORKING_SIZE}..{MAX_WORKING_SIZE}: "
              f"rendering at {used} pixels", file=sys.stderr)
    return image


def twin_kernel(choice: ModelChoice, layer: str, channel: int) -> Optional[Tensor]:
    """The conv twin's kernel (C_in, 3, 3) for output `channel` at `layer`, or None (no
    twin, or no convolution there: the attention stem)."""
    twin = conv_twin(choice)
    conv = explain.twin_conv(None if twin is None else load_model(twin, "cpu"), layer)
    return None if conv is None else explain.conv_kernel(conv, channel)


def render(args: argparse.Namespace) -> Figure:
    """The chosen Figure. Raises ValueError / ImageError / OSError / PretrainedError with a
    message for the user."""
    layers = check_model(args.model, trained=not args.untrained)
    name = args.layer or layers[0]
    if name not in layers:
        raise ValueError(f"no attention layer {name!r} in {args.model}; its attention "
                         f"layers: {', '.join(layers)}")
    image = working_image(Path(args.image), args.size)
    choice = ModelChoice(args.model, not args.untrained)
    traced = trace(load_model(choice, device="cpu"), images.to_tensor(image))
    layer = traced.layers[name]
    H, W = layer.size
    px = layer.pixel(*(args.pixel or (H // 2, W // 2)))
    if args.figure == "weights":
        return figures.weights_figure(px, layer_name=name)
    if args.figure == "logits":
        return figures.logits_figure(px, args.head, layer_name=name)
    if args.figure == "heads":
        return figures.head_maps_figure(layer, image, pixel=(px.row, px.col))
    conv_kernel = twin_kernel(choice, name, args.channel)
    if args.figure == "kernels":
        return figures.kernels_figure(explain.effective_kernel(layer, px, args.channel),
                                      conv_kernel, args.channel, pixel=(px.row, px.col),
                                      layer_name=name, cell=px.cell)
    return figures.pixel_figure(layer, px, args.head, args.channel, image, conv_kernel)


def main(argv=None) -> None:
    """`python -m sasa_viz.render` and the `sasa-viz-render` command."""
    args = parse_args(argv)
    out = Path(args.out)
    with one_line_errors("render"):
        figure = render(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=args.dpi, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
