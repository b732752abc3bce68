"""sasa_viz: an exact, inspectable implementation of Stand-Alone Self-Attention in Vision
Models (Ramachandran et al., 2019) and the tools to look inside it."""
from .attention import SelfAttention2d
from .pretrained import list_pretrained, load_pretrained
from .stem import AttentionStem
from .trace import LayerTrace, PixelTrace, Trace, trace

__all__ = ["SelfAttention2d", "AttentionStem", "trace", "Trace", "LayerTrace", "PixelTrace",
           "load_pretrained", "list_pretrained"]
