"""Files written whole or not at all, and their checksums: the one home of both.

    with atomic_path("out/model.safetensors") as partial:   # a fresh name beside it
        save_file(state, partial)                            # renamed when the block ends
    file_digest("out/model.safetensors")                     # its sha256, in hex

A stop while writing (Ctrl-C, a crash, a full disk) leaves the previous file, or none,
never half of one: the bytes go to a temporary name in the same folder, and
`os.replace` gives them the final name in one step. Two processes writing the same file
(two builds of the compiled kernel) each write their own temporary file.
"""
import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, Path]


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes ("sha256", "md5", ...: any `hashlib` name), read in
    chunks rather than whole."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write (its folder is made when
    missing). When the block ends, the file written there takes the name `path`; when
    the block raises, it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def default_cache_dir() -> Path:
    """$SASA_VIZ_CACHE if set, else ~/.cache/sasa_viz."""
    return Path(os.environ.get("SASA_VIZ_CACHE") or Path.home() / ".cache" / "sasa_viz")
