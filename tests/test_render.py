"""python -m sasa_viz.render: the explorer's figures for one pixel, without a browser, and
one clear line (never a traceback) for every mistake."""
from pathlib import Path

import pytest
from PIL import Image

from sasa_viz import render
from sasa_viz.drawing.images import MAX_WORKING_SIZE
from sasa_viz.models.catalogue import entry, list_models

PHOTO = Path(render.__file__).parent / "samples" / "photos" / "chelsea.png"
# the catalogue's convolutional baselines (conv stem, 3x3 convs): no attention to draw
CONV_MODELS = [n for n in list_models() if entry(n).config.spatial == "conv"]
ATTENTION_MODELS = [n for n in list_models() if n not in CONV_MODELS]
# one model of each kind: ResNet-38 and -50 differ from ResNet-26 in depth alone
ATTENTION_KINDS = [n for n in ATTENTION_MODELS if "resnet38" not in n and "resnet50" not in n]


@pytest.mark.parametrize("figure", render.FIGURES)
def test_renders_each_figure_of_a_sample_image(figure, tmp_path, capsys):
    out = tmp_path / f"{figure}.png"
    render.main([str(PHOTO), "--untrained", "--layer", "stages.1.0.spatial", "--pixel", "3", "5",
                 "--figure", figure, "--out", str(out), "--dpi", "60"])
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200


def test_the_output_folder_is_made_when_missing(tmp_path, capsys):
    out = tmp_path / "slides" / "week 3" / "fig.png"
    render.main([str(PHOTO), "--untrained", "--figure", "weights", "--out", str(out),
                 "--dpi", "40"])
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("size, used", [(1000, MAX_WORKING_SIZE), (2, 8)])
def test_a_clamped_size_is_announced(size, used, tmp_path, capsys):
    render.main([str(PHOTO), "--untrained", "--figure", "weights", "--size", str(size),
                 "--out", str(tmp_path / "x.png"), "--dpi", "40"])
    err = capsys.readouterr().err
    assert f"--size {size} is outside 8..{MAX_WORKING_SIZE}: rendering at {used} pixels" in err


def test_a_size_in_range_says_nothing(tmp_path, capsys):
    render.main([str(PHOTO), "--untrained", "--figure", "weights", "--size", "24",
                 "--out", str(tmp_path / "x.png"), "--dpi", "40"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ATTENTION_KINDS)
def test_every_kind_of_attention_model_in_the_catalogue_renders_untrained(name, tmp_path, capsys):
    out = tmp_path / "x.png"
    render.main([str(PHOTO), "--model", name, "--untrained", "--size", "16",
                 "--figure", "weights", "--out", str(out), "--dpi", "40"])
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("untrained", [[], ["--untrained"]])
def test_a_model_without_attention_is_refused_naming_its_attention_twins(name, untrained,
                                                                         tmp_path):
    twins = [n for n in list_models() if entry(n).conv_twin == name]
    with pytest.raises(SystemExit) as stop:
        render.main([str(PHOTO), "--model", name, *untrained, "--out", str(tmp_path / "x.png")])
    message = str(stop.value.code)
    assert message.startswith(f"render: {name} has no attention layers")
    assert all(twin in message for twin in twins) and "--figure kernels" in message
    assert not (tmp_path / "x.png").exists()


def test_a_model_without_shipped_weights_needs_untrained(tmp_path):
    name = next(n for n in ATTENTION_MODELS if entry(n).weights is None)
    with pytest.raises(SystemExit, match=f"render: {name} has no shipped weights.*--untrained"):
        render.main([str(PHOTO), "--model", name, "--out", str(tmp_path / "x.png")])


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], r"render: no attention layer 'nope' in sasa-cifar10; its attention "
                          r"layers: stages\.0\.0\.spatial, stages\.0\.1\.spatial, "),
    (["--pixel", "99", "0"], r"render: pixel \(99, 0\) is outside"),
    (["--pixel", "0", "-1"], r"render: pixel \(0, -1\) is outside"),
    (["--head", "9"], "render: head 9 does not exist"),
    (["--channel", "9999"], "render: channel must be an output channel"),
])
def test_bad_arguments_exit_with_one_line(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message) as stop:
        render.main([str(PHOTO), "--untrained", "--out", str(tmp_path / "x.png"), *args])
    assert "\n" not in str(stop.value.code)


@pytest.mark.parametrize("args, message", [
    (["--model", "sasa-cifar1"], "render: argument --model: unknown model 'sasa-cifar1'; did "
                                 "you mean sasa-cifar10? known models: sasa-resnet26, "),
    (["--head", "-1"], "render: argument --head: expected a whole number of at least 0"),
    (["--channel", "x"], "render: argument --channel: expected a whole number of at least 0"),
    (["--dpi", "0"], "render: argument --dpi: expected a whole number of at least 1, got '0'"),
    (["--out", "{tmp}/x.xyz"], "render: argument --out: {tmp}/x.xyz: .xyz files are not "
                               "supported; use one of "),
    (["--out", "{tmp}/file/x.png"], "render: argument --out: {tmp}/file cannot be a folder"),
])
def test_bad_arguments_are_refused_by_the_parser_in_one_line_before_any_work(
        args, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(render, "render", refuse)
    argv = [str(PHOTO), "--out", str(tmp_path / "x.png")] + [a.format(tmp=tmp_path)
                                                             for a in args]
    with pytest.raises(SystemExit) as stop:
        render.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert message.format(tmp=tmp_path) in err


def refuse(*args, **kwargs):
    """Stands in for the rendering where a mistake must be found before it starts."""
    raise AssertionError("rendering started before the mistake was found")


def test_a_missing_image_file_is_named(tmp_path):
    missing = tmp_path / "holiday.jpg"
    with pytest.raises(SystemExit, match=f"^render: no image file at {missing}$"):
        render.main([str(missing), "--out", str(tmp_path / "x.png")])


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(SystemExit, match="render: .*not an image"):
        render.main([str(text), "--out", str(tmp_path / "x.png")])
