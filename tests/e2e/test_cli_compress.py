"""``imgpipe compress`` on files and folders: outputs, sizes, bad files, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from tests.e2e.test_cli_local import imgpipe
from tests.support.covers import html_page, solid_png
from tests.support.photos import encode_jpeg, photo


def test_folder_is_mirrored_and_bad_files_are_named(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    (shots / "nested").mkdir(parents=True)
    big = encode_jpeg(photo(1, (1600, 1200)), quality=97)
    (shots / "big.jpg").write_bytes(big)
    buffer = io.BytesIO()
    photo(2, (1000, 1000)).save(buffer, "PNG")
    (shots / "nested" / "square.png").write_bytes(buffer.getvalue())
    (shots / "tiny.png").write_bytes(solid_png(size=(60, 60)))
    (shots / "fake.jpg").write_bytes(html_page())
    (shots / "notes.txt").write_text("not an image; not even looked at")

    done = imgpipe("compress", shots, "--out", tmp_path / "out", "--json")

    assert done.returncode == 3, done.stderr
    results = {Path(r["file"]).name: r for r in json.loads(done.stdout)}
    assert set(results) == {"big.jpg", "square.png", "tiny.png", "fake.jpg"}
    assert results["fake.jpg"]["error"].startswith("not_an_image")
    out = tmp_path / "out" / "shots"
    with Image.open(out / "big.jpg") as image:
        assert image.size == (800, 600) and image.format == "JPEG"
    with Image.open(out / "nested" / "square.jpg") as image:  # PNG in, JPEG out
        assert image.size == (800, 800) and image.format == "JPEG"
    assert results["big.jpg"]["compressed_size"] == (out / "big.jpg").stat().st_size < len(big)
    assert results["tiny.png"]["kept_original"] is True
    assert (out / "tiny.png").read_bytes() == (shots / "tiny.png").read_bytes()
    assert not (out / "fake.jpg").exists() and not (out / "notes.txt").exists()


def test_single_file_with_options_and_no_images(tmp_path: Path) -> None:
    source = tmp_path / "one.jpg"
    source.write_bytes(encode_jpeg(photo(3, (1200, 900)), quality=97))

    done = imgpipe("compress", source, "--out", tmp_path / "o", "--max-size", "300", "--json")
    missing = imgpipe("compress", tmp_path / "nope.jpg", "--json")
    (tmp_path / "empty").mkdir()
    empty = imgpipe("compress", tmp_path / "empty")

    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert (result["width"], result["height"]) == (300, 225)
    with Image.open(tmp_path / "o" / "one.jpg") as image:
        assert image.size == (300, 225)
    assert missing.returncode == 3
    assert json.loads(missing.stdout)[0]["error"] == "unreadable: No such file or directory"
    assert empty.returncode == 2 and "no images" in empty.stderr


def test_a_phone_heic_becomes_a_bounded_jpeg(tmp_path: Path) -> None:
    from pillow_heif import from_pillow

    source = tmp_path / "IMG_0001.HEIC"
    buffer = io.BytesIO()
    from_pillow(photo(4, (1600, 1200))).save(buffer, quality=95)
    source.write_bytes(buffer.getvalue())

    done = imgpipe("compress", source, "--out", tmp_path / "o", "--json")

    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert result["kept_original"] is False and (result["width"], result["height"]) == (800, 600)
    with Image.open(tmp_path / "o" / "IMG_0001.jpg") as image:
        assert image.format == "JPEG" and image.size == (800, 600)


def test_file_names_with_markup_are_printed_as_text(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    # No "/" in a file name, so no closing tag: as markup these were restyled, not shown.
    (shots / "[bold]bad.jpg").write_bytes(html_page())  # an error row names it
    (shots / "[italic]x.png").write_bytes(solid_png(size=(60, 60)))  # a result row names it

    done = imgpipe("compress", shots, "--out", tmp_path / "out", env={"COLUMNS": "250"})

    assert done.returncode == 3, done.stderr  # one file failed; the table was printed
    assert "[bold]bad.jpg" in done.stdout and "[italic]x.png" in done.stdout, done.stdout
