"""What the explorer's first page costs a fresh server, step by step.

    python benchmarks/first_page.py

Runs, in this fresh process and in the order the page does, what the first session of a
new server waits for: the imports, loading the model, the default gallery image (at its
working size and as shown), its trace, where to open (the image's most selective head),
and the first panel's drawings. One torch thread, as the app runs. Streamlit's own work (the
page's widgets, sending them, the browser drawing them) is not in here: benchmarks/load.py
times the whole first page on a real server.
"""
import importlib
import time

START = time.perf_counter()
steps = []


def step(name: str, since: float) -> float:
    now = time.perf_counter()
    steps.append((name, now - since))
    return now


importlib.import_module("streamlit")
t = step("import streamlit (the server has, before it is ready)", START)

import torch  # noqa: E402

torch.set_num_threads(1)
t = step("import torch (app.py, on the first page)", t)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sasa_viz.choices import class_names, load_model, model_choices, opening_view  # noqa: E402
from sasa_viz.drawing import html, images, overlay  # noqa: E402
from sasa_viz.inspection import explain  # noqa: E402
from sasa_viz.inspection.statistics import describe_layer, layer_statistics  # noqa: E402
from sasa_viz.inspection.trace import trace  # noqa: E402
from sasa_viz.ui.picture import png  # noqa: E402
from sasa_viz.ui.sources import BACKDROP  # noqa: E402
t = step("import sasa_viz and the page's helpers", t)

choice = model_choices()[0]
model = load_model(choice, "cpu")
t = step(f"load {choice.name} (weights checked)", t)

label = next(iter(images.gallery()))
photo = images.gallery()[label]()
image = np.array(images.to_working_size(photo, 32))
backdrop = images.to_display(photo, BACKDROP)
t = step(f"the default gallery image at 32 px, and as shown ({BACKDROP} px)", t)

traced = trace(model, images.to_tensor(Image.fromarray(image)))
t = step("trace (forward pass, every layer recorded)", t)

view = opening_view(traced)
layer_name, head = view.layer, view.head
layer = traced.layers[layer_name]
px = layer.pixel(*layer.feature_pixel(view.row, view.col))
sentence = describe_layer(layer_statistics(layer))
top5 = html.predictions_table(explain.top_k(traced.logits[0], class_names(model)))
t = step("where to open, the layer's sentence, the top 5", t)

picture = png(overlay.attention_overlay(backdrop, layer, px, head).image)
strip = png(overlay.head_strip(backdrop, layer, px))
tables = html.weights_panel(px, [head])
t = step("the first panel: picture, head strip, weights", t)

print(f"# The explorer's first page on a fresh server, {choice.name}, 32 px, 1 torch "
      f"thread\n")
print("| step | time |")
print("| --- | --- |")
for name, seconds in steps:
    print(f"| {name} | {seconds * 1000:.0f} ms |")
print(f"| total | {(t - START) * 1000:.0f} ms |")
