"""Take-away files: a pixel's trace as NPZ or CSV, a figure as PNG."""
import csv
import io

import numpy as np

from .trace import PixelTrace


def pixel_arrays(px: PixelTrace) -> dict:
    """Every array of a pixel trace, as numpy, plus its coordinates."""
    arrays = {name: getattr(px, name).numpy() for name in
              ["q", "keys", "values", "logits_content", "logits_row", "logits_col", "valid",
               "weights", "output"]}
    arrays["logits"] = px.logits.numpy()
    arrays["feature_pixel"] = np.array([px.row, px.col])
    arrays["window_origin"] = np.array(px.origin)     # feature pixel of window cell [0, 0]
    arrays["window_in_image"] = np.array(px.window)   # top, left, bottom, right
    return arrays


def pixel_npz(px: PixelTrace) -> bytes:
    """An .npz (no pickle) of `pixel_arrays`: np.load(f, allow_pickle=False) reads it."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **pixel_arrays(px))
    return buffer.getvalue()


def pixel_csv(px: PixelTrace) -> str:
    """One row per (head, neighbour): offsets, validity, the logit parts and the weight."""
    K, offsets = px.weights.shape[-1], px.offsets
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["head", "a", "b", "dy", "dx", "valid", "logit_content", "logit_row",
                     "logit_col", "logit", "weight"])
    logits = px.logits
    for h in range(px.weights.shape[0]):
        for a in range(K):
            for b in range(K):
                writer.writerow([h, a, b, int(offsets[0, a, b]), int(offsets[1, a, b]),
                                 int(px.valid[a, b]),
                                 *(f"{float(t[h, a, b]):.6g}" for t in
                                   (px.logits_content, px.logits_row, px.logits_col, logits,
                                    px.weights))])
    return out.getvalue()


def figure_png(figure, dpi: int = 150) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
