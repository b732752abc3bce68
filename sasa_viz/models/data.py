"""CIFAR-10 for training the pretrained models: loading, a fixed validation split,
augmentation and batching, in plain torch (no torchvision).

`load_cifar10(path)` reads any of three sources, recognised from the one path:

1. the project's shared archive `train.tar.gz`: `train/<class>/NNNN.jpg`, 32x32 JPEGs;
2. that archive extracted: a folder holding `train/<class>/` or the class folders
   directly (a folder holding one of the two archives is accepted as well);
3. the official `cifar-10-python.tar.gz`: pickled `data_batch_1..5`, and its
   `test_batch` (`split="test"`), read only to check trained models, never to train.

Decoding 50,000 JPEGs takes a few seconds, so the decoded arrays are cached as an .npz
keyed by the sha256 of the source; later loads read the cache.

Images stay uint8 (N, 3, 32, 32) until a batch is made; `to_float` maps them to
[0, 1]. Normalisation with CIFAR10_MEAN / CIFAR10_STD belongs to the model, not here.

Notation in shape comments: N images, B batch, H x W = 32 x 32, P padding.
"""
import hashlib
import io
import pickle
import re
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from sasa_viz.files import atomic_path, default_cache_dir, file_digest

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"   # published with the official release
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
SHARED_ARCHIVE = "train.tar.gz"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SIZE = 32
_BATCH_NAME = re.compile(r"data_batch_\d+")     # training batches of the official release
TEST_BATCH = "test_batch"                       # its test split
SPLITS = ("train", "test")

PathLike = Union[str, Path]

CIFAR10_SITE = "https://www.cs.toronto.edu/~kriz/cifar.html"
EXPECTED_SOURCES = (
    f"expected CIFAR-10's official python version, {OFFICIAL_ARCHIVE} from {CIFAR10_SITE} "
    "(`python -m sasa_viz.train --download DIR` fetches it, 163 MB), a train.tar.gz of "
    "train/<class>/*.jpg, or a folder of those class folders")


@dataclass
class Cifar10:
    """A decoded CIFAR-10 split, images still in uint8."""
    images: Tensor          # (N, 3, 32, 32) uint8
    labels: Tensor          # (N,) int64, index into `classes`
    classes: List[str]
    source_sha256: str      # of the archive file, or of a folder's paths and bytes
    split: str = "train"    # "train", or "test": the official release's test_batch

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------- download

def download_cifar10(dest_dir: PathLike, url: str = CIFAR10_URL) -> Path:
    """Fetch the official cifar-10-python.tar.gz into dest_dir and check its md5.

    An existing file with the right md5 is reused. A download with the wrong md5 is
    deleted and a ValueError raised.
    """
    dest = Path(dest_dir) / OFFICIAL_ARCHIVE
    if dest.is_file() and file_digest(dest, "md5") == CIFAR10_MD5:
        return dest
    with atomic_path(dest) as partial:      # a failed check raises: nothing is kept
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True,
                      desc="downloading CIFAR-10") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        md5 = file_digest(partial, "md5")
        if md5 != CIFAR10_MD5:
            raise ValueError(f"{url}: md5 {md5} is not the published {CIFAR10_MD5}; "
                             "the download was deleted")
    return dest


# ---------------------------------------------------------------------- finding a source

def _class_root(folder: Path) -> Optional[Path]:
    """The folder holding the class folders: `folder` itself or `folder/train`."""
    for root in (folder, folder / "train"):
        if any((root / name).is_dir() for name in CIFAR10_CLASSES):
            return root
    return None


def find_source(path: PathLike) -> Path:
    """The archive file or class-folder root that `path` points at. It reads no image,
    so the command lines call it to check a --data path before any decoding."""
    path = Path(path).expanduser()
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{path} is not a tar archive: {EXPECTED_SOURCES}")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"No CIFAR-10 data at {path}: {EXPECTED_SOURCES}")
    root = _class_root(path)
    if root is not None:
        return root
    archives = [path / name for name in (SHARED_ARCHIVE, OFFICIAL_ARCHIVE)
                if (path / name).is_file()]
    if archives:
        return archives[0]
    raise ValueError(f"No CIFAR-10 data found in the folder {path}: {EXPECTED_SOURCES}")


def _folder_images(root: Path) -> List[Tuple[str, Path]]:
    """(relative posix path, file) of every image under root/<class>/, sorted."""
    files = [(f"{name}/{file.name}", file)
             for name in CIFAR10_CLASSES if (root / name).is_dir()
             for file in (root / name).iterdir() if file.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files)


def source_sha256(source: Path) -> str:
    """sha256 of an archive file; for a folder, of its sorted relative image paths and
    their bytes (so the same images give the same digest wherever the folder lives)."""
    if source.is_file():
        return file_digest(source)
    digest = hashlib.sha256()
    for relative, file in _folder_images(source):
        data = file.read_bytes()
        digest.update(relative.encode() + b"\0" + len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- decoding

def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG or PNG) -> (3, 32, 32) uint8."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))                  # (H, W, 3)
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected a 32x32 image, got {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels.transpose(2, 0, 1)                               # (3, H, W)


def _label_of(relative: str) -> int:
    """Class index from the folder an image sits in: '.../<class>/<file>'."""
    name = PurePosixPath(relative).parent.name
    if name not in CIFAR10_CLASSES:
        raise ValueError(f"{relative}: '{name}' is not a CIFAR-10 class folder")
    return CIFAR10_CLASSES.index(name)


def _stack(decoded: List[Tuple[int, str, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Sort (label, name, image) by class then file name; stack into arrays."""
    if not decoded:
        raise ValueError(f"no images found in the class folders: {EXPECTED_SOURCES}")
    decoded.sort(key=lambda item: item[:2])
    images = np.stack([image for _, _, image in decoded])          # (N, 3, H, W)
    labels = np.array([label for label, _, _ in decoded], dtype=np.int64)  # (N,)
    return images, labels


def _read_folder(root: Path, progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Decode root/<class>/*.jpg."""
    files = _folder_images(root)
    decoded = [(_label_of(relative), relative, decode_image(file.read_bytes()))
               for relative, file in tqdm(files, desc="decoding CIFAR-10 images",
                                          unit="img", disable=not progress)]
    return _stack(decoded)


def _read_image_members(tar: tarfile.TarFile, members: List[tarfile.TarInfo],
                        progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Decode the images of a tar archive; the class is the folder they sit in."""
    decoded = [(_label_of(m.name), m.name, decode_image(tar.extractfile(m).read()))
               for m in tqdm(members, desc="decoding CIFAR-10 images",
                             unit="img", disable=not progress)]
    return _stack(decoded)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle can name any importable function and have it called (os.system, ...), so
    `find_class` allows only the few names numpy arrays are rebuilt from. Its functions
    are taken from numpy's own pickling rather than imported from its private modules
    (numpy.core in 1.x, numpy._core in 2.x); both spellings are allowed by name.
    """
    _reconstruct = np.zeros(1).__reduce__()[0]       # pickle protocols 2-4
    _frombuffer = np.zeros(1).__reduce_ex__(5)[0]    # pickle protocol 5
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a pickle")
        return self.ALLOWED[(module, name)]


def _read_pickled_batches(tar: tarfile.TarFile, members: List[tarfile.TarInfo],
                          progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Read data_batch_1..n of the official release, in that order."""
    images, labels = [], []
    for member in tqdm(sorted(members, key=lambda m: m.name), desc="reading CIFAR-10 batches",
                       unit="batch", disable=not progress):
        # written by Python 2: encoding="bytes" keeps its str keys and data as bytes
        batch = NumpyOnlyUnpickler(tar.extractfile(member), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)          # (n, 3072) R, G, B planes
        images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))   # (n, 3, H, W)
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))  # (n,)
    return np.concatenate(images), np.concatenate(labels)


def _read_archive(path: Path, progress: bool, split: str = "train"
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Read either kind of archive, told apart by its member names. Members are read
    into memory, never extracted to disk. A truncated or corrupt archive is a ValueError
    that names it."""
    try:
        with tarfile.open(path, "r:*") as tar:
            if split == "test":
                return _read_test_batch(tar, path, progress)
            return _read_members(tar, path, progress)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is damaged or truncated ({error}); fetch it "
                         f"again") from error


def _read_test_batch(tar: tarfile.TarFile, path: Path,
                     progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """The official release's test split, or a ValueError saying where it is."""
    tests = [m for m in tar.getmembers()
             if m.isfile() and PurePosixPath(m.name).name == TEST_BATCH]
    if not tests:
        raise ValueError(f"{path} has no {TEST_BATCH}: only CIFAR-10's official "
                         f"{OFFICIAL_ARCHIVE} ({CIFAR10_SITE}) holds the test split")
    return _read_pickled_batches(tar, tests, progress)


def _read_members(tar: tarfile.TarFile, path: Path,
                  progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """The training images of an open archive: data_batch_* pickles, else images."""
    files = [m for m in tar.getmembers() if m.isfile()]
    batch_members = [m for m in files if _BATCH_NAME.fullmatch(PurePosixPath(m.name).name)]
    image_members = [m for m in files if PurePosixPath(m.name).suffix.lower() in IMAGE_SUFFIXES]
    if batch_members:
        return _read_pickled_batches(tar, batch_members, progress)
    if image_members:
        return _read_image_members(tar, image_members, progress)
    raise ValueError(f"{path} holds neither data_batch_* files nor images: {EXPECTED_SOURCES}")


# ------------------------------------------------------------------------ load + cache

def load_cifar10(path: PathLike, cache_dir: Optional[PathLike] = None,
                 progress: bool = True, split: str = "train") -> Cifar10:
    """Load CIFAR-10's training images (or with split="test" the official release's test
    images) from any of the three sources (module docstring).

    The first load decodes and writes `cifar10-<sha256>.npz` (`cifar10-test-...`) into
    cache_dir (default: `default_cache_dir()`); later loads of the same source read that
    file instead.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    source = find_source(path)
    if split == "test" and not source.is_file():
        raise ValueError(f"{path} is a folder: only CIFAR-10's official {OFFICIAL_ARCHIVE} "
                         f"({CIFAR10_SITE}) holds the test split")
    sha256 = source_sha256(source)
    name = "cifar10" if split == "train" else "cifar10-test"
    cache = Path(cache_dir or default_cache_dir()).expanduser() / f"{name}-{sha256}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            images, labels = saved["images"], saved["labels"]
    else:
        if split == "test":
            images, labels = _read_archive(source, progress, split)
        else:
            read = _read_archive if source.is_file() else _read_folder
            images, labels = read(source, progress)
        _save_npz(cache, compressed=False, images=images, labels=labels)
    return Cifar10(images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                   classes=list(CIFAR10_CLASSES), source_sha256=sha256, split=split)


def _save_npz(path: Path, compressed: bool, **arrays: np.ndarray) -> None:
    """Write an .npz atomically: a half-written file never takes the final name."""
    with atomic_path(path) as partial, open(partial, "wb") as f:
        # numpy is given a file object, so it adds no .npz suffix to the temporary name
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


# ------------------------------------------------------------------------------- split

def train_val_split(n: int, val_size: int = 5000, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A fixed random split of range(n) into (train_idx, val_idx), both sorted int64.

    A plain (not stratified) random permutation from a seeded torch.Generator: the last
    val_size positions are the validation slice. For CIFAR-10's 50,000 training images
    this gives 45,000 / 5,000, with about 500 per class in validation.
    """
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and n - 1 = {n - 1}, got {val_size}")
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = permutation[:n - val_size], permutation[n - val_size:]
    return train_idx.sort().values, val_idx.sort().values


def held_out_split(n: int, val_size: int = 5000, seed: int = 0,
                   limit: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """(train_idx, val_idx) into all n images, as the training command uses them: an
    optional seeded random subset of `limit` images (smoke runs; the sources are sorted
    by class), split by `train_val_split` with at most a tenth held out."""
    subset = torch.arange(n)
    if limit:
        subset = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    train_idx, val_idx = train_val_split(len(subset), min(val_size, len(subset) // 10), seed)
    return subset[train_idx], subset[val_idx]


# ------------------------------------------------------------------------ augmentation

def random_crop_flip(batch: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop from a zero-padded image, then a random horizontal flip, per image.

    batch: (B, C, H, W) uint8 -> (B, C, H, W) uint8. One gather does both: each output
    pixel (i, j) reads padded pixel (dy + i, dx + j), or (dy + i, dx + W - 1 - j) when
    the image is flipped.
    """
    B, C, H, W = batch.shape
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)      # (B,) crop offsets
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator)      # (B,)
    flip = torch.randint(0, 2, (B,), generator=generator).bool()           # (B,)
    padded = torch.nn.functional.pad(batch, (padding,) * 4)                # (B, C, H+2P, W+2P)
    j = torch.arange(W)
    cols = torch.where(flip[:, None], W - 1 - j, j) + dx[:, None]          # (B, W)
    rows = torch.arange(H) + dy[:, None]                                   # (B, H)
    b = torch.arange(B)[:, None, None]                                     # (B, 1, 1)
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()                            # (B, C, H, W)


def to_float(batch: Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1], same shape."""
    return batch.float() / 255


def batches(images: Tensor, labels: Tensor, batch_size: int, shuffle: bool = False,
            augment: bool = False, seed: int = 0,
            epoch: int = 0) -> Iterator[Tuple[Tensor, Tensor]]:
    """Yield (float images in [0, 1] (b, 3, H, W), int64 labels (b,)) batches.

    The order (if shuffle) and the crops and flips (if augment) come from one generator
    seeded by (seed, epoch), so an epoch is the same on every run and every machine,
    and each epoch differs. The last batch may be smaller.
    """
    # SeedSequence mixes the pair into one well-spread 64-bit seed.
    mixed = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(mixed))
    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        batch = images[index]                                              # (b, 3, H, W) uint8
        if augment:
            batch = random_crop_flip(batch, generator)
        yield to_float(batch), labels[index]


# ----------------------------------------------------------------------- small samples

# 100 validation images (10 per class) committed with the project, for tests and the app
SAMPLE_PATH = (Path(__file__).resolve().parent.parent / "samples"
               / "cifar10_val_sample.npz")


def save_sample(dataset: Cifar10, indices, out_path: PathLike) -> None:
    """Write dataset[indices] as a compressed .npz of plain arrays (no pickle):
    images (n, 3, 32, 32) uint8, labels (n,) int64, classes, the indices themselves
    and the source's sha256, so the sample says where it came from."""
    indices = torch.as_tensor(indices, dtype=torch.int64)
    _save_npz(Path(out_path), compressed=True,
              images=dataset.images[indices].numpy(),
              labels=dataset.labels[indices].numpy(),
              classes=np.array(dataset.classes),
              indices=indices.numpy(),
              source_sha256=np.array(dataset.source_sha256))


def load_sample(path: PathLike) -> Cifar10:
    """Read a file written by `save_sample` (allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as saved:
        return Cifar10(images=torch.from_numpy(saved["images"]),
                       labels=torch.from_numpy(saved["labels"]),
                       classes=[str(name) for name in saved["classes"]],
                       source_sha256=str(saved["source_sha256"]))
