"""The attention maths: one k x k window per pixel, its logits, masked softmax and
weighted sum, and the layers built on it.

    window      offsets, validity, padding, the masked softmax and weighted sum: the core
    layer       SelfAttention2d (relative, absolute or no position term), LocalSelfAttention
    stem        the spatially-aware attention stem (value mixtures over blocks)
    native      the fused C++ kernel (built on first use), forward and backward
    local_ops   its plain-PyTorch twin, used without a compiler
    reference   the plain unfold oracle both are tested against
    recording   hands a layer's tensors to whoever records them (trace, statistics)

Imports: torch, sasa_viz.files and sasa_viz.numbers only (docs/ARCHITECTURE.md).
"""
from sasa_viz.attention.layer import LocalSelfAttention, SelfAttention2d
from sasa_viz.attention.stem import AttentionStem

__all__ = ["LocalSelfAttention", "SelfAttention2d", "AttentionStem"]
