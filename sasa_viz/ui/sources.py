"""What a page traces and draws from, and the caches that let one server serve a whole
class: a `Source` (a model on a device, and a working image with its picture) and a
`PixelView` (one feature pixel of one of its layers), the keys of every shared drawing.

Every session runs its page in its own thread of one process. What is heavy is computed
once and shared, read-only, between sessions: the models, the working images of a
gallery image or an upload, the traced forward pass of a working image (`Source.trace`)
and the drawings of one pixel (`PixelView`). A drawing is keyed by everything it shows,
so two sessions share one only when they show the same thing, and each gets its own copy
(st.cache_data); traces and working images are never written to (the image arrays are
read-only). Every cache is bounded, in entries or in bytes (MODELS ... DRAWINGS below).
"""
import gc
import hashlib
from types import MappingProxyType
from typing import Mapping, NamedTuple, Tuple

import numpy as np
import streamlit as st
import torch
from PIL import Image

from sasa_viz.choices import ModelChoice, OpeningView, load_model, opening_view
from sasa_viz.drawing import images
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import LayerTrace, PixelTrace, Trace, trace
from sasa_viz.models.pretrained import resolve_device

WORKING_SIZES = [16, 24, 32, 48, 64, 96, 128]
BACKDROP = 640         # pixels, the longer side of the picture drawn under the model's grid

# The bounds of the shared caches (docs/PERFORMANCE.md, "A class on one server", says what
# they come to):
MODELS = 6             # models (3.5 MB each for the CIFAR models)
GALLERY_IMAGES = 128   # gallery items at every working size and as shown (about 1.3 MB each)
UPLOADS = 32           # uploads at every working size and as shown (at most 1.3 MB each)
TRACES = 16            # traced forward passes (sasa-cifar10: 5 MiB at 32 px, 71 MiB at 128 px);
                       # each open session also holds the one it shows
DRAWINGS = "16MB"      # per kind of drawing (pickled PNG or HTML, 5-60 KB each)



class Picture(NamedTuple):
    """What the pages keep of a gallery image or an upload, read-only."""
    working: Mapping[int, np.ndarray]   # working size -> (H, W, 3) uint8: what models see
    backdrop: np.ndarray                # (Hd, Wd, 3) uint8, longer side BACKDROP: the
                                        # picture at (nearly) its own resolution, drawn
                                        # under the model's grid
    digest: str                         # of the backdrop's pixels: what caches hash


HELD_TRACE = "_held_trace"     # session state: (Source, Trace), the trace a session shows

# A full garbage collection walks every object of the process, and the 240,000 that torch,
# numpy, matplotlib and Streamlit make on import live as long as the server: they are
# moved out of the collector's way, once, when the pages first import this module.
gc.freeze()


class Source(NamedTuple):
    """What a page traces: a model on a device, and a working image, with the picture it
    was made from (to draw on). The shared caches hash it by content (`key`), so sessions
    looking at the same image share one trace and its drawings."""
    choice: ModelChoice
    device: str
    image: np.ndarray           # (H, W, 3) uint8, read-only: the working image
    backdrop: np.ndarray        # (Hd, Wd, 3) uint8, read-only: `Picture.backdrop`
    digest: str                 # `Picture.digest`

    @classmethod
    def of(cls, choice: ModelChoice, device: str, image: np.ndarray,
           picture: Picture) -> "Source":
        """The Source of `image`, one working size of `picture`."""
        return cls(choice, device, image, picture.backdrop, picture.digest)

    def key(self) -> tuple:
        """What the caches hash for it: the working image in full and the backdrop by
        its digest (hashing its 1.2 MB took 1-2 ms, several times a click)."""
        return self.choice, self.device, self.image, self.digest

    def picture(self) -> Image.Image:
        """The backdrop as the overlays take it."""
        return Image.fromarray(self.backdrop)

    def trace(self) -> Trace:
        """The traced forward pass: the one this session holds, or the shared cache's,
        which the session then holds for as long as it shows this Source, so that a
        class of more students than the bounded cache holds (TRACES) never has a trace
        pushed out from under its clicks."""
        held = st.session_state.get(HELD_TRACE)
        if held is not None and held[0].same_as(self):
            return held[1]
        traced = cached_trace(self.choice, self.device, self.image)
        st.session_state[HELD_TRACE] = (self, traced)
        return traced

    def same_as(self, other: "Source") -> bool:
        return (self.choice == other.choice and self.device == other.device
                and self.digest == other.digest
                and (self.image is other.image or np.array_equal(self.image, other.image)))

    def model(self) -> torch.nn.Module:
        return cached_model(self.choice, self.device)


def cache_drawing(**options):
    """st.cache_data for what is computed from a Source (or a PixelView of one): the
    Source hashed by its `key`, not by its picture's pixels."""
    return st.cache_data(hash_funcs={Source: Source.key}, **options)


class PixelView(NamedTuple):
    """One feature pixel of one layer of a Source, as recorded or without the position
    term (`explain.without_position`): the key of the shared drawings of a pixel."""
    source: Source
    layer: str
    row: int                    # feature pixel
    col: int
    without_position: bool = False

    def traced(self) -> Tuple[LayerTrace, PixelTrace]:
        """The layer's trace, and the pixel's (recorded, or its hypothetical)."""
        layer = self.source.trace().layers[self.layer]
        px = layer.pixel(self.row, self.col)
        return layer, explain.without_position(px) if self.without_position else px

    def pixel(self) -> PixelTrace:
        return self.traced()[1]

    def recorded(self) -> "PixelView":
        """The same pixel, as the model computed it."""
        return self._replace(without_position=False)


# --- shared caches ------------------------------------------------------------------------

@st.cache_resource(max_entries=MODELS, show_spinner="Loading the model...")
def cached_model(choice: ModelChoice, device: str) -> torch.nn.Module:
    return load_model(choice, device)


@st.cache_resource(max_entries=TRACES, show_spinner="Running the model on the image...")
def cached_trace(choice: ModelChoice, device: str, image: np.ndarray) -> Trace:
    """The traced forward pass of one working image (H, W, 3) uint8."""
    x = images.to_tensor(Image.fromarray(image)).to(resolve_device(device))
    return trace(cached_model(choice, device), x)


@st.cache_resource(show_spinner=False)
def gallery():
    return images.gallery()


def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def picture_views(picture: Image.Image) -> Picture:
    """The picture at every working size and as shown (`Picture`), read-only: what a page
    needs of a picture, at most 1.3 MB whatever the size of the upload."""
    working = {size: read_only(np.array(images.to_working_size(picture, size)))
               for size in WORKING_SIZES}
    backdrop = read_only(np.array(images.to_display(picture, BACKDROP)))
    return Picture(MappingProxyType(working), backdrop,
                   hashlib.blake2b(backdrop.tobytes(), digest_size=16).hexdigest())


@st.cache_resource(max_entries=GALLERY_IMAGES, show_spinner=False)
def gallery_images(label: str) -> Picture:
    return picture_views(gallery()[label]())


@st.cache_resource(max_entries=UPLOADS, show_spinner="Reading the image...")
def uploaded_images(data: bytes, name: str) -> Picture:
    return picture_views(images.load_image(data, name))


@cache_drawing(max_entries=64, show_spinner=False)
def cached_opening_view(source: Source) -> OpeningView:
    return opening_view(source.trace())

