"""What every page shares: the sidebar's image, model and device pickers, and the caches
that let one server serve a whole class (models and traces are computed once per
image, size, model and device, and shared read-only between sessions)."""
import numpy as np
import streamlit as st
import torch
from PIL import Image

from sasa_viz import images
from sasa_viz.explorer import ModelChoice, conv_twin, load_model, model_choices
from sasa_viz.pretrained import PretrainedError, resolve_device
from sasa_viz.trace import Trace, trace

WORKING_SIZES = [16, 24, 32, 48, 64, 96, 128]


@st.cache_resource(max_entries=6, show_spinner="Loading the model...")
def cached_model(choice: ModelChoice, device: str) -> torch.nn.Module:
    return load_model(choice, device)


@st.cache_resource(max_entries=32, show_spinner="Running the model on the image...")
def cached_trace(choice: ModelChoice, device: str, image: np.ndarray) -> Trace:
    """The traced forward pass of one working image (H, W, 3) uint8."""
    x = images.to_tensor(Image.fromarray(image)).to(resolve_device(device))
    return trace(cached_model(choice, device), x)


@st.cache_resource(show_spinner=False)
def gallery():
    return images.gallery()


@st.cache_resource(max_entries=64, show_spinner=False)
def gallery_image(label: str) -> Image.Image:
    return gallery()[label]()


@st.cache_data(max_entries=8, show_spinner="Reading the image...")
def decoded_upload(data: bytes, name: str) -> Image.Image:
    return images.load_image(data, name)


def pick_image() -> np.ndarray:
    """Sidebar: a gallery image or an upload, at the chosen working resolution.

    A bad upload shows a short message and the page keeps the last good image.
    Returns the working image (H, W, 3) uint8.
    """
    bar = st.sidebar
    source = bar.radio("Image", ["Gallery", "Upload"], horizontal=True, key="image_source")
    picture = None
    if source == "Gallery":
        label = bar.selectbox("Gallery image", list(gallery()), key="gallery_item",
                              help="Photographs (see SOURCES.md) and held-out CIFAR-10 images.")
        picture = gallery_image(label)
    else:
        upload = bar.file_uploader("Your image (PNG, JPEG, WebP, BMP, GIF)", key="upload")
        if upload is None:
            bar.info("Choose a file; until then the gallery image stays.")
        else:
            try:
                picture = decoded_upload(upload.getvalue(), upload.name)
            except images.ImageError as error:
                bar.error(str(error))
    if picture is None:
        picture = st.session_state.get("last_picture")
    if picture is None:
        picture = gallery_image(next(iter(gallery())))
    st.session_state["last_picture"] = picture
    size = bar.select_slider("Working resolution (longer side, pixels)", WORKING_SIZES,
                             value=32, key="size",
                             help="The models were trained on 32x32 images; larger sizes "
                                  "show more detail and take longer.")
    return np.asarray(images.to_working_size(picture, size))


def pick_model(label: str = "Model") -> ModelChoice:
    choices = model_choices()
    return st.sidebar.selectbox(label, choices, format_func=lambda c: c.label, key="model",
                                help="Each shipped model, and the same architecture "
                                     "untrained for comparison.")


def pick_device() -> str:
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.sidebar.selectbox("Device", options, key="device",
                                  help="auto: CUDA when present, else the CPU.")
    st.sidebar.caption(f"Running on **{resolve_device(device)}**.")
    return device


def model_or_stop(choice: ModelChoice, device: str) -> torch.nn.Module:
    """The cached model, or a friendly message and a stopped page if it cannot load."""
    try:
        return cached_model(choice, device)
    except PretrainedError as error:
        st.error(f"The model {choice.name} cannot be loaded: {error}")
        st.stop()


def twin_model(choice: ModelChoice, device: str):
    """The convolutional twin of `choice`, or None."""
    twin = conv_twin(choice)
    return None if twin is None else cached_model(twin, device)
