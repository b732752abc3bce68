"""sasa_viz: an exact, inspectable implementation of Stand-Alone Self-Attention in Vision
Models (Ramachandran et al., 2019) and the tools to look inside it.

    model = create("sasa-cifar10", pretrained=True)        # the shipped weights, checked
    image = to_working_size(load_image("cat.png"), 64)     # RGB, longer side 64 px
    t = trace(model, to_tensor(image))
    t                                          # a few lines: the model and its layers
    t.layers["stages.0.0.spatial"].pixel(8, 8)

The parts (docs/ARCHITECTURE.md): sasa_viz.attention (the maths), sasa_viz.models (the
catalogue, weights and data), sasa_viz.inspection (trace, explain, statistics,
experiments, cost), sasa_viz.drawing (panels, figures, the picture), sasa_viz.ui (the
app).
"""
from sasa_viz.attention import AttentionStem, SelfAttention2d
from sasa_viz.drawing.images import load_image, to_tensor, to_working_size
from sasa_viz.inspection.trace import LayerTrace, PixelTrace, Trace, trace
from sasa_viz.models import create, list_models, list_pretrained, load_pretrained

__all__ = ["create", "load_pretrained", "list_models", "list_pretrained", "SelfAttention2d",
           "AttentionStem", "trace", "Trace", "LayerTrace", "PixelTrace", "load_image",
           "to_working_size", "to_tensor"]
