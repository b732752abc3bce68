"""pyproject.toml: `pip install .` gives a package that works from any folder, with the
files it reads at run time (the kernel's C++ source, the samples, the shipped weights),
its three commands, and the runtime pins of requirements.txt."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from sasa_viz import evaluate, render, train
from sasa_viz.files import file_digest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMMANDS = {"sasa-viz-train": train, "sasa-viz-evaluate": evaluate, "sasa-viz-render": render}
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.pyc",
                                    ".pytest_cache", "build", "dist", "*.egg-info")

# run in a fresh interpreter: what `import sasa_viz` finds, and whether its files are there
PROBE = """
import json, sasa_viz
from sasa_viz.models import data, pretrained
from sasa_viz.drawing import images
from sasa_viz.attention import native
model = sasa_viz.load_pretrained("sasa-cifar10", device="cpu")
print(json.dumps({"package": sasa_viz.__file__, "weights": str(pretrained.PRETRAINED_DIR),
                  "classes": model.pretrained["classes"], "kernel": native.SOURCE.is_file(),
                  "gallery": len(images.gallery()),
                  "sample": len(data.load_sample(data.SAMPLE_PATH))}))
"""


def probe(python_path: Path, cwd: Path) -> dict:
    """PROBE's findings, run with only `python_path` added to the import path."""
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def package_files() -> dict:
    """Wheel path -> checkout file of everything the package must carry."""
    files = {f"sasa_viz/{p.relative_to(ROOT / 'sasa_viz').as_posix()}": p
             for p in (ROOT / "sasa_viz").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    files.update({f"sasa_viz/weights/{p.name}": p for p in (ROOT / "pretrained").iterdir()})
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would install, built from a copy of the checkout (so no
    build folder is left in the checkout) without fetching anything."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--wheel-dir", str(tmp), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = tmp.glob("sasa_viz-*.whl")
    return path


def test_the_dependencies_are_the_runtime_pins_of_requirements_txt():
    """The library's pins and the app's extra together are requirements.txt's; the
    library needs no Streamlit."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines
            if line.strip() and not line.startswith("#")]
    library = PYPROJECT["project"]["dependencies"]
    app = PYPROJECT["project"]["optional-dependencies"]["app"]
    assert sorted(library + app) == sorted(pins)
    assert not any(pin.startswith("streamlit") for pin in library)


LIBRARY_PROBE = """
import importlib, pkgutil, sys, sasa_viz
for module in pkgutil.walk_packages(sasa_viz.__path__, "sasa_viz."):
    if not module.name.startswith("sasa_viz.ui"):
        importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name.split(".")[0] == "streamlit"))
"""


def test_the_library_imports_no_streamlit():
    """Every module outside the app's pages imports without Streamlit: a notebook user
    installs the library alone (`pip install sasa-viz`)."""
    done = subprocess.run([sys.executable, "-c", LIBRARY_PROBE], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_runs_its_module_main(command, capsys):
    module = COMMANDS[command]
    assert PYPROJECT["project"]["scripts"][command] == f"{module.__name__}:main"
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_data_and_the_weights_unchanged(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = sorted(set(package_files()) - names)
        assert not missing, f"not in the wheel: {missing}"
        for name, file in package_files().items():
            digest = hashlib.sha256(archive.read(name)).hexdigest()
            assert digest == file_digest(file), name
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for command, module in COMMANDS.items():
        assert f"{command} = {module.__name__}:main" in scripts


@pytest.mark.slow
def test_an_installed_wheel_finds_its_own_weights_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:      # what pip does with a pure-Python wheel
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = probe(site, cwd=elsewhere)
    assert Path(found["package"]) == site / "sasa_viz" / "__init__.py"
    assert Path(found["weights"]) == site / "sasa_viz" / "weights"
    assert found["classes"][:2] == ["airplane", "automobile"]
    assert found["kernel"] and found["gallery"] > 100 and found["sample"] == 100


def test_a_checkout_finds_its_weights_from_any_folder(tmp_path):
    found = probe(ROOT, cwd=tmp_path)
    assert Path(found["package"]) == ROOT / "sasa_viz" / "__init__.py"
    assert Path(found["weights"]) == ROOT / "pretrained"
    assert found["kernel"] and found["sample"] == 100
