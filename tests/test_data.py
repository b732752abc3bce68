"""Tests for sasa_viz.models.data on tiny synthetic sources built in tmp_path (no network, and
the 50,000-image shared archive is never decoded here)."""
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sasa_viz.models import data
from sasa_viz.models.data import (CIFAR10_CLASSES, CIFAR10_SITE, EXPECTED_SOURCES, Cifar10,
                                  NumpyOnlyUnpickler, batches, download_cifar10, find_source,
                                  load_cifar10, load_sample, random_crop_flip, save_sample,
                                  source_sha256, to_float, train_val_split)

SAMPLE = data.SAMPLE_PATH
SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train.tar.gz"
SHARED_SHA256 = "45a63b9dd7542b37404b94f3e6f0269562f89fe2ff16ed505e6a327bb8c68449"

# (class, file, colour): plain-colour images survive JPEG almost exactly
JPEG_IMAGES = [("airplane", "0000.jpg", (200, 30, 30)), ("airplane", "0001.jpg", (30, 200, 30)),
               ("cat", "0000.jpg", (30, 30, 200)), ("cat", "0001.jpg", (120, 120, 120)),
               ("truck", "0000.jpg", (250, 250, 10)), ("truck", "0001.jpg", (10, 90, 170))]
JPEG_LABELS = [0, 0, 3, 3, 9, 9]


def jpeg_bytes(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def jpeg_archive(tmp_path) -> Path:
    """A small train.tar.gz like the shared one: train/<class>/NNNN.jpg."""
    path = tmp_path / "train.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, file, colour in JPEG_IMAGES:
            add_bytes(tar, f"train/{name}/{file}", jpeg_bytes(colour))
    return path


@pytest.fixture
def jpeg_folder(tmp_path) -> Path:
    """The same images extracted: <root>/train/<class>/NNNN.jpg."""
    root = tmp_path / "extracted"
    for name, file, colour in JPEG_IMAGES:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        (root / "train" / name / file).write_bytes(jpeg_bytes(colour))
    return root


def official_batches(seed=0):
    """Two small data_batch dicts in the official layout, as Python 2 wrote them."""
    rng = np.random.default_rng(seed)
    return [{b"batch_label": b"training batch %d of 5" % (i + 1),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(x) for x in rng.integers(0, 10, n)]}
            for i, n in enumerate((4, 3))]


def write_official(path: Path, members: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            add_bytes(tar, f"cifar-10-batches-py/{name}", payload)
    return path


@pytest.fixture
def official_archive(tmp_path):
    """A fake cifar-10-python.tar.gz with two training batches and a test batch."""
    train = official_batches()
    test = official_batches(seed=1)[0]
    members = {"data_batch_2": pickle.dumps(train[1]), "data_batch_1": pickle.dumps(train[0]),
               "test_batch": pickle.dumps(test), "readme.html": b"<html></html>"}
    return write_official(tmp_path / "cifar-10-python.tar.gz", members), train


# ------------------------------------------------------------------------------ sources

def check_jpeg_result(result: Cifar10):
    assert result.images.dtype == torch.uint8 and result.images.shape == (6, 3, 32, 32)
    assert result.labels.dtype == torch.int64 and result.labels.tolist() == JPEG_LABELS
    assert result.classes == CIFAR10_CLASSES
    colours = torch.tensor([colour for _, _, colour in JPEG_IMAGES])           # (6, 3)
    error = (result.images.float() - colours[:, :, None, None]).abs().max()
    assert error <= 3        # JPEG is lossy, but a plain colour comes back nearly exact


def test_jpeg_archive_and_folder_load_alike(jpeg_archive, jpeg_folder, tmp_path):
    from_archive = load_cifar10(jpeg_archive, cache_dir=tmp_path / "cache", progress=False)
    check_jpeg_result(from_archive)
    assert from_archive.source_sha256 == hashlib.sha256(jpeg_archive.read_bytes()).hexdigest()
    for folder in (jpeg_folder, jpeg_folder / "train"):       # train/<class> or <class>
        from_folder = load_cifar10(folder, cache_dir=tmp_path / "cache", progress=False)
        check_jpeg_result(from_folder)
        assert torch.equal(from_folder.images, from_archive.images)
    # a folder that holds the archive file means that archive
    from_parent = load_cifar10(tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert from_parent.source_sha256 == from_archive.source_sha256


def test_official_archive_loads_training_batches_in_order(official_archive, tmp_path):
    path, train = official_archive
    result = load_cifar10(path, cache_dir=tmp_path / "cache", progress=False)
    expected = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    assert result.images.dtype == torch.uint8 and result.images.shape == (7, 3, 32, 32)
    assert np.array_equal(result.images.numpy(), expected)       # test_batch left out
    assert result.labels.tolist() == train[0][b"labels"] + train[1][b"labels"]
    assert result.labels.dtype == torch.int64 and result.classes == CIFAR10_CLASSES


def test_folder_sha256_ignores_location_but_not_content(jpeg_folder):
    digest = source_sha256(jpeg_folder / "train")
    copy = jpeg_folder.parent / "elsewhere"
    (jpeg_folder / "train").rename(copy)
    assert source_sha256(copy) == digest
    (copy / "cat" / "0000.jpg").write_bytes(jpeg_bytes((0, 0, 0)))
    assert source_sha256(copy) != digest


def test_unknown_paths_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_cifar10(tmp_path / "missing", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--download"):
        load_cifar10(tmp_path / "empty", cache_dir=tmp_path / "cache")
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="not a tar archive"):
        load_cifar10(tmp_path / "notes.txt", cache_dir=tmp_path / "cache")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        add_bytes(tar, "notes.txt", b"nothing to see")
    with pytest.raises(ValueError, match="neither"):
        load_cifar10(tmp_path / "other.tar.gz", cache_dir=tmp_path / "cache")


def test_a_truncated_archive_is_named_as_damaged(jpeg_archive, tmp_path):
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(jpeg_archive.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.tar.gz is damaged or truncated"):
        load_cifar10(truncated, cache_dir=tmp_path / "cache")


def test_find_source_checks_a_path_without_decoding_it(jpeg_archive, jpeg_folder, monkeypatch):
    """The command lines call it on --data before any heavy work."""
    monkeypatch.setattr(data, "decode_image", None)            # any decoding would fail
    assert find_source(jpeg_archive) == jpeg_archive
    assert find_source(jpeg_folder) == jpeg_folder / "train"
    (jpeg_folder / "notes.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="notes.txt is not a tar archive"):
        find_source(jpeg_folder / "notes.txt")


def test_the_expected_sources_say_where_cifar10_comes_from_in_general_terms():
    """The official site and archive, the --download option, and what else loads; no path
    of this project's surroundings."""
    assert CIFAR10_SITE == "https://www.cs.toronto.edu/~kriz/cifar.html"
    for words in (CIFAR10_SITE, "cifar-10-python.tar.gz", "--download DIR",
                  "train/<class>/*.jpg"):
        assert words in EXPECTED_SOURCES
    assert "../" not in EXPECTED_SOURCES and "shared" not in EXPECTED_SOURCES


# ------------------------------------------------------------------- restricted unpickler

class RunsACommand:
    """Unpickling this with plain pickle.load would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_a_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": RunsACommand(marker)})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        NumpyOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
    archive = write_official(tmp_path / "cifar-10-python.tar.gz", {"data_batch_1": payload})
    with pytest.raises(pickle.UnpicklingError):
        load_cifar10(archive, cache_dir=tmp_path / "cache", progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol, legacy_name", [(5, False), (3, True)])
def test_unpickler_reads_numpy_arrays(protocol, legacy_name):
    batch = official_batches()[0]
    payload = pickle.dumps(batch, protocol=protocol)
    if legacy_name:   # the official file names numpy.core.multiarray, as numpy 1.x did
        payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    loaded = NumpyOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
    assert np.array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == batch[b"labels"]


# ----------------------------------------------------------------------------- the cache

def test_second_load_reads_the_cache(jpeg_archive, tmp_path, monkeypatch):
    calls = []
    decode = data.decode_image
    monkeypatch.setattr(data, "decode_image", lambda payload: calls.append(1) or decode(payload))
    monkeypatch.setenv("SASA_VIZ_CACHE", str(tmp_path / "env-cache"))

    first = load_cifar10(jpeg_archive, progress=False)
    assert len(calls) == len(JPEG_IMAGES)
    sha = first.source_sha256
    assert (tmp_path / "env-cache" / f"cifar10-{sha}.npz").is_file()

    second = load_cifar10(jpeg_archive, progress=False)
    assert len(calls) == len(JPEG_IMAGES)                     # nothing decoded again
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert second.source_sha256 == sha

    load_cifar10(jpeg_archive, cache_dir=tmp_path / "arg-cache", progress=False)
    assert (tmp_path / "arg-cache" / f"cifar10-{sha}.npz").is_file()   # the argument wins


# ------------------------------------------------------------------------------- split

def test_train_val_split_sizes_disjoint_and_fixed():
    train_idx, val_idx = train_val_split(50000)
    assert len(train_idx) == 45000 and len(val_idx) == 5000
    assert train_idx.dtype == val_idx.dtype == torch.int64
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(50000))
    again_train, again_val = train_val_split(50000)
    assert torch.equal(again_train, train_idx) and torch.equal(again_val, val_idx)
    # pinned: the split must not move between runs, machines or versions
    assert val_idx[:8].tolist() == [5, 33, 35, 36, 50, 57, 59, 81]
    assert not torch.equal(train_val_split(50000, seed=1)[1], val_idx)
    assert [len(part) for part in train_val_split(20, val_size=5)] == [15, 5]
    with pytest.raises(ValueError):
        train_val_split(10, val_size=10)


# ------------------------------------------------------------------------- augmentation

def coordinate_images(n: int) -> torch.Tensor:
    """(n, 3, 32, 32) uint8: channel 0 = row + 1, channel 1 = column + 1, channel 2 = 200,
    so every crop offset and flip gives a different image and padding shows as 0."""
    rows = torch.arange(1, 33)[:, None].expand(32, 32)
    image = torch.stack([rows, rows.T, torch.full((32, 32), 200)]).to(torch.uint8)
    return image.expand(n, 3, 32, 32).clone()


def crop_and_flip(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """The reference: one image, one crop, one optional flip."""
    crop = torch.nn.functional.pad(image, (4, 4, 4, 4))[:, dy:dy + 32, dx:dx + 32]
    return crop.flip(-1) if flip else crop


def test_augment_crops_and_flips_reproducibly():
    batch = coordinate_images(64)
    out = random_crop_flip(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert torch.equal(out, random_crop_flip(batch, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, random_crop_flip(batch, torch.Generator().manual_seed(1)))

    found = []
    for image, result in zip(batch, out):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(crop_and_flip(image, dy, dx, flip), result)]
        assert len(matches) == 1                      # every output is exactly one crop/flip
        found.append(matches[0])
    assert {flip for _, _, flip in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 20     # offsets spread over the 9 x 9


def test_to_float_maps_uint8_to_unit_interval():
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1)
    result = to_float(batch)
    assert result.dtype == torch.float32 and result.shape == batch.shape
    assert torch.allclose(result.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_batches_cover_the_data_and_repeat_per_seed_and_epoch():
    images = coordinate_images(10)
    images[:, 2] = torch.arange(10, dtype=torch.uint8)[:, None, None]   # tag each image
    labels = torch.arange(10)

    plain = list(batches(images, labels, batch_size=4))
    assert [len(y) for _, y in plain] == [4, 4, 2]
    assert torch.equal(torch.cat([y for _, y in plain]), labels)
    x, _ = plain[0]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32) and 0 <= x.min() <= x.max() <= 1

    def epoch(seed, number):
        return list(batches(images, labels, 4, shuffle=True, augment=True, seed=seed, epoch=number))

    first = epoch(0, 0)
    order = torch.cat([y for _, y in first])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for (x1, y1), (x2, y2) in zip(first, epoch(0, 0)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(torch.cat([y for _, y in epoch(0, 1)]), order)
    assert not torch.equal(torch.cat([y for _, y in epoch(1, 0)]), order)


# ------------------------------------------------------------------------------ download

def test_download_checks_the_md5(tmp_path, monkeypatch):
    served = tmp_path / "served.tar.gz"
    served.write_bytes(b"pretend this is CIFAR-10")
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(served.read_bytes()).hexdigest())

    path = download_cifar10(tmp_path / "good", url=served.as_uri())
    assert path == tmp_path / "good" / "cifar-10-python.tar.gz"
    assert path.read_bytes() == served.read_bytes()
    again = download_cifar10(tmp_path / "good", url=(tmp_path / "gone").as_uri())
    assert again == path                         # a verified file is not fetched again

    served.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="md5"):
        download_cifar10(tmp_path / "bad", url=served.as_uri())
    assert list((tmp_path / "bad").iterdir()) == []        # nothing left behind


# ------------------------------------------------------------------------------- samples

def test_sample_round_trip(jpeg_archive, tmp_path):
    dataset = load_cifar10(jpeg_archive, cache_dir=tmp_path / "cache", progress=False)
    save_sample(dataset, [4, 0, 2], tmp_path / "sample.npz")
    sample = load_sample(tmp_path / "sample.npz")
    assert torch.equal(sample.images, dataset.images[[4, 0, 2]])
    assert sample.labels.tolist() == [9, 0, 3]
    assert sample.classes == CIFAR10_CLASSES and sample.source_sha256 == dataset.source_sha256


def test_committed_sample_is_the_validation_slice():
    with np.load(SAMPLE, allow_pickle=False) as saved:
        assert all(saved[key].dtype != object for key in saved.files)
        indices = torch.from_numpy(saved["indices"])
    sample = load_sample(SAMPLE)
    assert sample.images.shape == (100, 3, 32, 32) and sample.images.dtype == torch.uint8
    assert sample.labels.bincount().tolist() == [10] * 10
    assert sample.classes == CIFAR10_CLASSES and sample.source_sha256 == SHARED_SHA256
    assert torch.isin(indices, train_val_split(50000)[1]).all()
    assert torch.equal(sample.labels, indices // 5000)     # archive order: 5,000 per class


@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(),
                    reason=f"the project's shared CIFAR-10 archive is not at {SHARED_ARCHIVE}")
def test_committed_sample_matches_the_shared_archive():
    assert hashlib.sha256(SHARED_ARCHIVE.read_bytes()).hexdigest() == SHARED_SHA256
    with np.load(SAMPLE, allow_pickle=False) as saved:
        indices = saved["indices"].tolist()
    sample = load_sample(SAMPLE)
    wanted = {f"train/{CIFAR10_CLASSES[i // 5000]}/{i % 5000:04d}.jpg": row
              for row, i in enumerate(indices)}
    found = 0
    with tarfile.open(SHARED_ARCHIVE, "r|gz") as tar:      # stream; decode only the 100
        for member in tar:
            if member.name in wanted:
                image = data.decode_image(tar.extractfile(member).read())
                assert np.array_equal(image, sample.images[wanted[member.name]].numpy())
                found += 1
    assert found == 100


def test_the_official_test_split_is_read_apart_from_the_training_images(official_archive,
                                                                         tmp_path):
    path, train = official_archive
    test = official_batches(seed=1)[0]
    cache = tmp_path / "cache"
    for _ in range(2):                                            # decoded, then cached
        held_back = load_cifar10(path, cache_dir=cache, progress=False, split="test")
        assert held_back.split == "test"
        assert held_back.labels.tolist() == test[b"labels"]
        assert held_back.images.flatten(1).numpy().tolist() == test[b"data"].tolist()
        trained = load_cifar10(path, cache_dir=cache, progress=False)
        assert len(trained) == sum(len(batch[b"labels"]) for batch in train)


def test_only_the_official_archive_has_a_test_split(jpeg_archive, jpeg_folder, tmp_path):
    for source in (jpeg_archive, jpeg_folder):
        with pytest.raises(ValueError, match="official cifar-10-python.tar.gz"):
            load_cifar10(source, cache_dir=tmp_path / "cache", progress=False, split="test")
