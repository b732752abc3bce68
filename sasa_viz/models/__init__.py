"""The models: the catalogue of named ResNets (the paper's and the CIFAR ones), their
shipped weights, and the CIFAR-10 data they are trained on.

    catalogue   configs, the named entries (`list_models`, `entry`), `build`, the layers
    pretrained  `create` (timm-style: fresh, or with checked weights), `load_pretrained`
    data        CIFAR-10 archives and folders, the held-out split, the committed sample

Imports: sasa_viz.attention, sasa_viz.files, sasa_viz.numbers (docs/ARCHITECTURE.md).
"""
from sasa_viz.models.catalogue import attention_layers, entry, list_models
from sasa_viz.models.pretrained import create, list_pretrained, load_pretrained

__all__ = ["create", "load_pretrained", "list_pretrained", "list_models", "entry",
           "attention_layers"]
