"""python -m sasa_viz.render: the explorer's figures for one pixel, without a browser."""
from pathlib import Path

import pytest
from PIL import Image

from sasa_viz import render

PHOTO = Path(render.__file__).parent / "samples" / "photos" / "chelsea.png"


@pytest.mark.parametrize("figure", render.FIGURES)
def test_renders_each_figure_of_a_sample_image(figure, tmp_path, capsys):
    out = tmp_path / f"{figure}.png"
    render.main([str(PHOTO), "--untrained", "--layer", "stages.1.0.spatial", "--pixel", "3", "5",
                 "--figure", figure, "--out", str(out), "--dpi", "60"])
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "no attention layer 'nope'"),
    (["--pixel", "99", "0"], "outside this layer's"),
    (["--model", "nope"], "unknown model"),
])
def test_bad_arguments_exit_with_a_message(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        render.main([str(PHOTO), "--untrained", "--out", str(tmp_path / "x.png"), *args])


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(SystemExit, match="render: .*not an image"):
        render.main([str(text), "--out", str(tmp_path / "x.png")])
