"""Render the explorer's figures for one pixel without a browser, for slides.

    python -m sasa_viz.render photo.jpg --model sasa-cifar10 --layer stages.0.0.spatial \\
        --pixel 8 8 --out fig.png
    python -m sasa_viz.render photo.jpg --figure weights --size 64 --pixel 20 30 --out w.png

--pixel is a feature pixel (row, column) of the chosen layer's map. The figures are
`sasa_viz.figures`, the ones the app offers for download.
"""
import argparse
import sys
from pathlib import Path

from . import explain, figures, images
from .explorer import ModelChoice, conv_twin, load_model
from .models import list_models
from .pretrained import PretrainedError
from .trace import trace

FIGURES = ("pixel", "weights", "logits", "heads", "kernels")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Render the explorer's figures for one pixel.")
    p.add_argument("image", help="an image file (PNG, JPEG, WebP, BMP, GIF)")
    p.add_argument("--model", default="sasa-cifar10", help="a registered model name")
    p.add_argument("--untrained", action="store_true", help="the architecture, untrained")
    p.add_argument("--layer", help="attention layer name (default: the first)")
    p.add_argument("--pixel", nargs=2, type=int, metavar=("ROW", "COL"),
                   help="feature pixel of the layer (default: the centre)")
    p.add_argument("--head", type=int, default=0)
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="working resolution (longer side)")
    p.add_argument("--figure", choices=FIGURES, default="pixel")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--dpi", type=int, default=150)
    return p.parse_args(argv)


def render(args: argparse.Namespace):
    """The chosen Figure. Raises ValueError / ImageError with a message for the user."""
    if args.model not in list_models():
        raise ValueError(f"unknown model {args.model!r}; known: {', '.join(list_models())}")
    choice = ModelChoice(args.model, not args.untrained)
    picture = images.load_image(Path(args.image).read_bytes(), Path(args.image).name)
    image = images.to_working_size(picture, args.size)
    model = load_model(choice, device="cpu")
    traced = trace(model, images.to_tensor(image))
    name = args.layer or next(iter(traced.layers))
    if name not in traced.layers:
        raise ValueError(f"no attention layer {name!r}; layers: {', '.join(traced.layers)}")
    layer = traced.layers[name]
    H, W = layer.size
    px = layer.pixel(*(args.pixel or (H // 2, W // 2)))
    twin = conv_twin(choice)
    conv = explain.twin_conv(None if twin is None else load_model(twin, "cpu"), name)
    conv_kernel = None if conv is None else explain.conv_kernel(conv, args.channel)
    if args.figure == "weights":
        return figures.weights_figure(px, layer_name=name)
    if args.figure == "logits":
        return figures.logits_figure(px, args.head, layer_name=name)
    if args.figure == "heads":
        return figures.head_maps_figure(layer, image)
    if args.figure == "kernels":
        return figures.kernels_figure(explain.effective_kernel(layer, px, args.channel),
                                      conv_kernel, args.channel, pixel=(px.row, px.col),
                                      layer_name=name, cell=px.cell)
    return figures.pixel_figure(layer, px, args.head, args.channel, image, conv_kernel)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        figure = render(args)
    except (ValueError, OSError, PretrainedError) as error:   # ImageError: a ValueError
        sys.exit(f"render: {error}")
    figure.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
