"""sasa_viz: an exact, inspectable implementation of Stand-Alone Self-Attention in Vision
Models (Ramachandran et al., 2019) and the tools to look inside it.

    image = to_working_size(load_image("cat.png"), 64)     # RGB, longer side 64 px
    t = trace(load_pretrained("sasa-cifar10"), to_tensor(image))
    t                                          # a few lines: the model and its layers
    t.layers["stages.0.0.spatial"].pixel(8, 8)
"""
from .attention import SelfAttention2d
from .images import load_image, to_tensor, to_working_size
from .pretrained import list_pretrained, load_pretrained
from .stem import AttentionStem
from .trace import LayerTrace, PixelTrace, Trace, trace

__all__ = ["SelfAttention2d", "AttentionStem", "trace", "Trace", "LayerTrace", "PixelTrace",
           "load_pretrained", "list_pretrained", "load_image", "to_working_size", "to_tensor"]
