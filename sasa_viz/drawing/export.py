"""Take-away files: a pixel's trace as NPZ or CSV, a figure as PNG.

Recorded numbers always keep their names. A counterfactual pixel (px.counterfactual,
e.g. `explain.without_position`) is saved as the recorded pixel plus the numbers that
differ under their own names, suffixed with the counterfactual's name
("weights_without_position"), and its files are named with it (`file_stem`).
"""
import csv
import io

import numpy as np

from sasa_viz.inspection.trace import PixelTrace

_LOGIT_PARTS = ("logits_content", "logits_row", "logits_col")


def file_stem(layer_name: str, px: PixelTrace) -> str:
    """e.g. "stages.0.0.spatial-pixel-3-5", "...-without-position" for a counterfactual."""
    stem = f"{layer_name}-pixel-{px.row}-{px.col}"
    if px.counterfactual is None:
        return stem
    return f"{stem}-{px.counterfactual.name.replace('_', '-')}"


def _recorded_arrays(px: PixelTrace) -> dict:
    """Name -> numpy array: every tensor of `px` and its coordinates."""
    arrays = {name: getattr(px, name).numpy() for name in
              ["q", "keys", "values", *_LOGIT_PARTS, "valid", "weights", "output"]}
    arrays["logits"] = px.logits.numpy()
    arrays["feature_pixel"] = np.array([px.row, px.col])
    arrays["window_origin"] = np.array(px.origin)     # feature pixel of window cell [0, 0]
    arrays["window_in_image"] = np.array(px.window)   # top, left, bottom, right
    return arrays


def pixel_arrays(px: PixelTrace) -> dict:
    """Every array of a pixel trace, as numpy, plus its coordinates; for a counterfactual
    the recorded arrays plus each one that differs as NAME_<counterfactual name>."""
    arrays = _recorded_arrays(px.recorded)
    if px.counterfactual is None:
        return arrays
    suffix = px.counterfactual.name
    arrays.update({f"{name}_{suffix}": array for name, array in _recorded_arrays(px).items()
                   if not np.array_equal(array, arrays[name])})
    return arrays


def pixel_npz(px: PixelTrace) -> bytes:
    """An .npz (no pickle) of `pixel_arrays`: np.load(f, allow_pickle=False) reads it."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **pixel_arrays(px))
    return buffer.getvalue()


def pixel_csv(px: PixelTrace) -> str:
    """One row per (head, neighbour): offsets, validity, the logit parts and the weight,
    to 6 significant digits; for a counterfactual, the recorded ones and then its logit
    and weight, in columns named logit_<name> and weight_<name>. Columns: head, a, b,
    dy, dx, valid, logit_content, logit_row, logit_col, logit, weight."""
    recorded = px.recorded
    columns = [*(getattr(recorded, part) for part in _LOGIT_PARTS), recorded.logits,
               recorded.weights]
    header = ["logit_content", "logit_row", "logit_col", "logit", "weight"]
    if px.counterfactual is not None:
        columns += [px.logits, px.weights]
        header += [f"logit_{px.counterfactual.name}", f"weight_{px.counterfactual.name}"]
    K, offsets = px.weights.shape[-1], px.offsets
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["head", "a", "b", "dy", "dx", "valid", *header])
    for h in range(px.weights.shape[0]):
        for a in range(K):
            for b in range(K):
                writer.writerow([h, a, b, int(offsets[0, a, b]), int(offsets[1, a, b]),
                                 int(px.valid[a, b]),
                                 *(f"{float(t[h, a, b]):.6g}" for t in columns)])
    return out.getvalue()


def figure_png(figure, dpi: int = 150) -> bytes:
    """A matplotlib figure as PNG bytes, trimmed to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
