"""``python -m penet_tf.evaluate`` on real photographs: values against scikit-image / NumPy."""

import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest
from conftest import load_once
from PIL import Image
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.datasets import load_sample_images

from penet_tf import Generator, metrics
from penet_tf import evaluate as evaluate_cli
from penet_tf.evaluate import build_parser, evaluate, main
from penet_tf.image_io import read_rgb
from penet_tf.inpainting import load_inpainter
from penet_tf.io_utils import PID_SPACE


def _degrade(image, seed):
    rng = np.random.default_rng(seed)
    out = ndimage.gaussian_filter(image.astype(np.float64), sigma=(1.0, 1.0, 0))
    out += rng.normal(0, 8, image.shape)
    h, w = image.shape[:2]
    out[h // 3 : h // 2, w // 3 : w // 2] = rng.uniform(0, 255, 3)  # a "bad fill"
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    for name in ("images", "predictions", "masks"):
        (root / name).mkdir()
    china, flower = load_sample_images().images
    photos = {
        "astronaut": data.astronaut()[20:220, 120:350],  # 200 x 230: five MS-SSIM scales
        "chelsea": data.chelsea()[40:220, 100:300],  # 180 x 200
        "china": china[100:200, 150:280],  # 100 x 130: fewer scales
        "flower": flower[100:300, 200:400],  # predicted perfectly
    }
    predictions, masks = {}, {}
    for seed, (name, photo) in enumerate(photos.items()):
        predictions[name] = photo if name == "flower" else _degrade(photo, seed)
        mask = np.zeros(photo.shape[:2], np.uint8)
        mask[photo.shape[0] // 3 : photo.shape[0] // 2, photo.shape[1] // 4 :] = 255
        masks[name] = mask
        Image.fromarray(photo).save(root / "images" / f"{name}.png")
        Image.fromarray(predictions[name]).save(root / "predictions" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    generator = Generator(base_channels=4)
    generator.build()
    generator.save_weights(root / "generator.weights.h5")
    (root / "generator.config.json").write_text(json.dumps({"base_channels": 4}))
    return {
        "root": root,
        "photos": photos,
        "predictions": predictions,
        "masks": masks,
        "weights": str(root / "generator.weights.h5"),
    }


@pytest.fixture(autouse=True)
def _weights_loaded_once(request, loads, monkeypatch):
    """The module's weights loaded once per set of arguments (``conftest.load_once``)."""
    if "folders" in request.fixturenames:
        weights = request.getfixturevalue("folders")["weights"]
        load_once(monkeypatch, evaluate_cli, weights, loads)


def _args(folders, *extra):
    root = folders["root"]
    return ["--images", str(root / "images"), *extra]


def test_metrics_of_predictions_match_skimage(folders, tmp_path, capsys):
    report_path = tmp_path / "reports" / "run.json"
    args = _args(folders, "--predictions", str(folders["root"] / "predictions"))
    args += ["--masks", str(folders["root"] / "masks"), "--out", str(report_path), "--no-fid"]
    assert main(args + ["--quiet"]) == 0
    assert "evaluated 4 image(s)" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    rows = {row["name"]: row for row in report["per_image"]}
    assert sorted(rows) == sorted(folders["photos"])
    for name, original in folders["photos"].items():
        row, prediction = rows[name], folders["predictions"][name]
        a, b = original.astype(np.float64), prediction.astype(np.float64)
        hole = np.broadcast_to((folders["masks"][name] != 0)[..., None], a.shape)
        assert (row["height"], row["width"]) == original.shape[:2]
        assert row["l1"] == pytest.approx(100 * np.abs(a - b).mean() / 255, abs=1e-3)
        assert row["l1_hole"] == pytest.approx(100 * np.abs(a - b)[hole].mean() / 255, abs=1e-3)
        assert row["hole_ratio"] == pytest.approx(hole.mean(), abs=1e-9)
        assert row["relative_mae"] == pytest.approx(np.abs(a - b).sum() / (a + b).sum(), abs=1e-6)
        gaussian = structural_similarity(
            original,
            prediction,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        release = structural_similarity(
            original, prediction, win_size=51, data_range=255, channel_axis=-1
        )
        assert row["ssim"] == pytest.approx(gaussian, abs=1e-3)
        assert row["ssim_win51"] == pytest.approx(release, abs=1e-3)
        if name == "flower":
            assert row["psnr"] is None and row["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
        else:
            psnr = peak_signal_noise_ratio(original, prediction, data_range=255)
            assert row["psnr"] == pytest.approx(psnr, abs=1e-3)
            assert 0 < row["ms_ssim"] < 0.99
    assert [rows[n]["ms_ssim_scales"] for n in ("astronaut", "chelsea", "china")] == [5, 5, 4]
    overall = report["overall"]
    assert overall["images"] == 4 and overall["psnr_infinite"] == 1
    assert overall["l1"] == pytest.approx(np.mean([r["l1"] for r in rows.values()]))
    assert overall["psnr"] == pytest.approx(
        np.mean([r["psnr"] for r in rows.values() if r["psnr"] is not None])
    )
    assert overall["fid"] is None and any("--no-fid" in note for note in report["notes"])

    with open(tmp_path / "reports" / "run.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [line["name"] for line in table] == sorted(rows)
    for line in table:
        assert float(line["ssim"]) == pytest.approx(rows[line["name"]]["ssim"], abs=1e-12)
        assert (line["psnr"] == "") == (rows[line["name"]]["psnr"] is None)
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]


def test_model_with_the_paper_protocol(folders, tmp_path):
    out = tmp_path / "protocol.json"
    args = _args(folders, "--model", folders["weights"], "--protocol", "places2-centre128")
    assert main(args + ["--out", str(out), "--no-fid", "--batch-size", "3", "--quiet"]) == 0
    rows = json.loads(out.read_text())["per_image"]
    assert len(rows) == 4
    for row in rows:
        assert (row["height"], row["width"], row["ms_ssim_scales"]) == (256, 256, 5)
        assert row["hole_ratio"] == 0.25  # the centred 128 x 128 hole
        # Known pixels are untouched, so the whole-image L1 is the hole's, diluted 4x.
        assert row["l1"] == pytest.approx(0.25 * row["l1_hole"], rel=1e-9)
        assert row["l1_hole"] > 1.0
    # The images the release's test.py scores: its dataset's img.resize((w, h)), with
    # Pillow's default filter (bicubic; bilinear here before).
    path = folders["root"] / "images" / "astronaut.png"
    released = np.asarray(Image.open(path).convert("RGB").resize((256, 256)))
    np.testing.assert_array_equal(read_rgb(path, (256, 256)), released)


def test_generated_masks_are_deterministic(folders):
    inpainter = load_inpainter(folders["weights"])
    reports = [
        evaluate(
            folders["root"] / "images",
            inpainter=inpainter,
            mask_type="strokes",
            seed=seed,
            fid=False,
            progress=False,
        )[0]["per_image"]
        for seed in (1, 1, 2)
    ]
    assert reports[0] == reports[1]
    assert [r["hole_ratio"] for r in reports[0]] != [r["hole_ratio"] for r in reports[2]]
    assert all(0.09 < r["hole_ratio"] < 0.41 for r in reports[0])


def test_an_image_s_strokes_do_not_depend_on_other_images_skipped(folders, tmp_path):
    """Strokes are seeded by the image's position among the files listed: with one
    prediction missing, the images after it took the next image's mask (hole_ratio and
    l1_hole moved), no longer the masks ``penet_tf.inpaint`` used."""
    import shutil

    some = tmp_path / "predictions"
    shutil.copytree(folders["root"] / "predictions", some)
    (some / "astronaut.png").unlink()  # the first in name order

    def per_image(predictions):
        report, skipped = evaluate(
            folders["root"] / "images",
            predictions=predictions,
            mask_type="strokes",
            seed=3,
            fid=False,
            progress=False,
        )
        return {r["name"]: r for r in report["per_image"]}, skipped

    everything, _ = per_image(folders["root"] / "predictions")
    fewer, skipped = per_image(some)
    assert [s.name for s in skipped] == [str(folders["root"] / "images" / "astronaut.png")]
    assert sorted(fewer) == ["chelsea", "china", "flower"]
    for name, row in fewer.items():
        assert row == everything[name], name


def small_feature_model(size=32):
    """A randomly initialised stand-in for InceptionV3: (16-d features, 10 logits)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input([size, size, 3])
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, [features, keras.layers.Dense(10)(features)], name="small")


def test_fid_and_inception_score_in_the_report(folders, tmp_path, monkeypatch):
    model = small_feature_model()
    root = folders["root"]
    # The originals as their own predictions (a copy: the same folder is refused): FID 0,
    # equal Inception Scores.
    copies = shutil.copytree(root / "images", tmp_path / "copies")
    same, _ = evaluate(root / "images", predictions=copies, feature_model=model, progress=False)
    assert same["overall"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["overall"]["inception_score"] == pytest.approx(
        same["overall"]["inception_score_originals"]
    )
    # 4 images in one split (one image per split scored exactly 1.0, std 0)
    assert same["overall"]["inception_score"] > 1.0 + 1e-6
    assert same["settings"]["inception_score_splits"] == 1
    assert any("4 images in 1 split(s)" in note for note in same["notes"])
    assert same["settings"]["feature_model"] == "small"
    # under the features' 16 dimensions: FID is biased, and the report says so
    assert any(
        "fid: 4 images, not more than the features' 16 dimensions" in n for n in same["notes"]
    )
    assert same["settings"]["inception_weights"] is None  # (a feature model of the caller's)
    # random Inception weights (None, "tests only"): os.fspath(None) failed after the work
    monkeypatch.setattr(metrics, "inception_model", lambda weights: model)
    random, _ = evaluate(
        root / "images", predictions=copies, inception_weights=None, progress=False
    )
    assert random["settings"]["inception_weights"] is None and random["overall"]["fid"] < 1e-6
    degraded, _ = evaluate(
        root / "images", predictions=root / "predictions", feature_model=model, progress=False
    )
    assert degraded["overall"]["fid"] > 1e-4
    assert degraded["overall"]["inception_score_originals"] == pytest.approx(
        same["overall"]["inception_score_originals"]
    )
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(root / "images" / "china.png", one)
    alone, _ = evaluate(one, predictions=root / "images", feature_model=model, progress=False)
    assert alone["overall"]["inception_score"] is None
    assert alone["settings"]["inception_score_splits"] is None  # (it said 1)


def test_fid_is_skipped_for_one_image_without_loading_inception(folders, tmp_path):
    out = tmp_path / "one.json"
    image = folders["root"] / "images" / "china.png"
    args = ["--images", str(image), "--predictions", str(folders["root"] / "predictions")]
    assert main(args + ["--out", str(out), "--quiet"]) == 0  # FID on by default
    report = json.loads(out.read_text())
    assert report["overall"]["fid"] is None and report["settings"]["feature_model"] is None
    assert any("at least 2 images" in note for note in report["notes"])


def test_skips_and_errors(folders, tmp_path, capsys):
    root = folders["root"]
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("astronaut", "china"):
        (partial / f"{name}.png").write_bytes((root / "predictions" / f"{name}.png").read_bytes())
    (partial / "chelsea.png").write_bytes(b"garbage")
    out = tmp_path / "partial.json"
    args = _args(folders, "--predictions", str(partial), "--out", str(out), "--no-fid", "--quiet")
    assert main(args) == 1
    err = capsys.readouterr().err
    report = json.loads(out.read_text())
    assert [row["name"] for row in report["per_image"]] == ["astronaut", "china"]
    skipped = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert set(skipped) == {str(root / "images" / n) for n in ("chelsea.png", "flower.png")}
    assert "no prediction named flower.*" in skipped[str(root / "images" / "flower.png")]
    assert "skipped " + str(root / "images" / "chelsea.png") in err

    # Missing Inception weights: a one-line error, no download, no traceback.
    missing = tmp_path / "inception.h5"
    args = _args(folders, "--predictions", str(root / "predictions"), "--out", str(out))
    assert main(args + ["--inception-weights", str(missing), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no InceptionV3 weights at") and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_args(folders, "--predictions", str(empty), "--out", str(out), "--no-fid")) == 2
    assert "no image could be evaluated" in capsys.readouterr().err
    one_file = str(root / "predictions" / "china.png")
    assert main(_args(folders, "--predictions", one_file, "--out", str(out), "--no-fid")) == 2
    assert f"--predictions {one_file} is a file: give the folder" in capsys.readouterr().err
    # The images as their own predictions: a perfect score (L1 0, SSIM 1), exit status 0.
    images = str(root / "images")
    assert main(_args(folders, "--predictions", images, "--out", str(out), "--no-fid")) == 2
    assert f"--predictions {images} is the --images folder" in capsys.readouterr().err
    one = str(root / "images" / "china.png")  # one photo, its folder as the predictions
    assert main(["--images", one, "--predictions", images, "--out", str(out), "--no-fid"]) == 2
    assert "its prediction would be the photo itself" in capsys.readouterr().err
    # The predictions as their own masks: l1_hole 13x too low, exit status 0.
    masks = ["--masks", predictions := str(root / "predictions")]
    assert main(_args(folders, "--predictions", predictions, *masks, "--out", str(out))) == 2
    assert f"--masks {predictions} is the --predictions folder" in capsys.readouterr().err
    one_mask = ["--masks", str(root / "predictions" / "china.png")]  # one photo's prediction
    args = ["--images", one, "--predictions", predictions, *one_mask, "--out", str(out)]
    assert main([*args, "--no-fid"]) == 2
    assert "its prediction would be its mask" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a model needs masks
        main(_args(folders, "--model", folders["weights"], "--out", str(out)))
    assert exit_info.value.code == 2
    # Strategy options with predictions were ignored (exit status 0).
    with pytest.raises(SystemExit) as exit_info:
        main(_args(folders, "--predictions", predictions, "--out", str(out), "--margin", "7"))
    assert exit_info.value.code == 2
    assert "--margin: a photo strategy applies to --model only" in capsys.readouterr().err


def test_a_report_that_would_replace_an_input_or_cannot_be_written_is_refused_first(
    folders, tmp_path, capsys
):
    root = folders["root"]
    inputs = [*(root / "images").iterdir(), *(root / "masks").iterdir()]
    before = {path: path.read_bytes() for path in inputs}
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "table.csv").mkdir()
    refusals = {
        str(root / "images" / "china.png"): "would replace the input",  # was overwritten
        str(root / "masks" / "china.png"): "would replace the input",
        str(tmp_path): "is a folder: give the file to write",
        # a folder yet to be: the JSON was written as a file named "reports", then
        # "File exists" for its CSV inside it, after the whole evaluation
        str(tmp_path / "reports") + os.sep: "names a folder: give the file to write",
        str(tmp_path / "afile" / "r.json"): "afile is a file, not a folder",
        str(tmp_path / "table.json"): "its CSV " + str(tmp_path / "table.csv") + " is a folder",
        "": "--out is empty",
        # JSON in report.csv and the table in report.csv.csv (exit status 0)
        str(tmp_path / "report.csv"): f"report.csv names the JSON report, and its per-image "
        f"CSV goes beside it (--out {tmp_path / 'report.json'} writes",
    }
    # A model that does not exist: each refusal comes before the model is loaded.
    model = ["--model", str(tmp_path / "never-loaded.weights.h5")]
    for out, reason in refusals.items():
        args = _args(folders, *model, "--masks", str(root / "masks"), "--out", out, "--quiet")
        assert main(args) == 2
        err = capsys.readouterr().err
        assert reason in err and "never-loaded" not in err and "Traceback" not in err, err
    assert {path: path.read_bytes() for path in inputs} == before
    assert not (tmp_path / "table.json").exists()  # nothing half-written


def test_a_report_onto_the_model_or_inception_weights_is_refused(folders, tmp_path, capsys):
    """--out the --model file was written over (exit 0): the weights held the report."""
    root = folders["root"]
    model, config = root / "generator.weights.h5", root / "generator.config.json"
    saved = tmp_path / "savedmodel" / "1"
    saved.mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"a model")
    inception = tmp_path / "inception.h5"
    inception.write_bytes(b"weights")
    before = {path: path.read_bytes() for path in (model, config, saved / "saved_model.pb")}
    masks = ["--masks", str(root / "masks"), "--quiet"]
    cases = [
        (str(model), str(model), "would replace the input"),
        (str(model), str(config), "would replace the input"),
        (str(saved.parent), str(saved / "saved_model.pb"), "is inside the model folder"),
        (str(saved), str(saved / "report.json"), "is inside the model folder"),
    ]
    for model_arg, out, reason in cases:
        assert main(_args(folders, "--model", model_arg, *masks, "--out", out)) == 2
        assert reason in capsys.readouterr().err
    args = _args(folders, "--predictions", str(root / "predictions"), "--quiet")
    assert main([*args, "--inception-weights", str(inception), "--out", str(inception)]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in before} == before
    assert inception.read_bytes() == b"weights"


def test_leftovers_of_a_killed_run_beside_the_report_are_swept(folders, tmp_path, dead_pid):
    (tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-report.json").write_text("{")
    # the user's, named like an older version's temporary ("2023" is no running pid)
    (tmp_path / ".tmp-2023-thesis-figures").mkdir()
    out = tmp_path / "report.json"
    args = _args(folders, "--predictions", str(folders["root"] / "predictions"))
    (tmp_path / ".tmp-cache").mkdir()  # the user's: it went with the sweep
    assert main([*args, "--out", str(out), "--no-fid", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path)) == [
        ".tmp-2023-thesis-figures",
        ".tmp-cache",
        "report.csv",
        "report.json",
    ]


def test_the_report_and_its_csv_are_replaced_together(folders, tmp_path, monkeypatch):
    """A full disk while writing the CSV left the new JSON beside the last run's CSV."""
    from penet_tf import evaluate as evaluate_module

    out = tmp_path / "report.json"
    args = _args(folders, "--predictions", str(folders["root"] / "predictions"))
    assert main([*args, "--out", str(out), "--no-fid", "--quiet"]) == 0
    before = {path: path.read_bytes() for path in (out, tmp_path / "report.csv")}
    write_text = evaluate_module.write_text

    def full_disk(text, path):
        if str(path).endswith(".csv"):
            raise OSError(28, "No space left on device")
        write_text(text, path)

    monkeypatch.setattr(evaluate_module, "write_text", full_disk)
    assert main([*args, "--out", str(out), "--no-fid", "--quiet", "--mask-type", "centre"]) == 2
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(os.listdir(tmp_path)) == ["report.csv", "report.json"]


def test_means_over_part_of_the_images_and_large_seeds_are_named(tmp_path, capsys):
    """SSIM has no value for an image under its window (11 / 51 pixels): the means were
    over a subset without a note. A seed of 2^64 was a traceback after loading."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, side in (("big", 64), ("tiny", 8)):
        photo = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(photo).save(images / f"{name}.png")
    out = tmp_path / "report.json"
    copies = shutil.copytree(images, tmp_path / "copies")  # (the same folder is refused)
    args = ["--images", str(images), "--predictions", str(copies), "--out", str(out)]
    assert main([*args, "--no-fid", "--quiet", "--mask-type", "centre"]) == 0
    notes = " ".join(json.loads(out.read_text())["notes"])
    assert "ssim: the mean is over 1 of 2 images (an image under 11 pixels" in notes
    assert "ssim_win51: the mean is over 1 of 2 images (an image under 51 pixels" in notes
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--mask-type", "strokes", "--seed", str(2**64)])
    assert exit_info.value.code == 2
    assert "must be within int64" in capsys.readouterr().err


def test_masks_without_a_hole_are_noted_in_the_report(folders, tmp_path):
    root = folders["root"]
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in folders["photos"]:
        mask = np.asarray(Image.open(root / "masks" / f"{name}.png"))
        if name in ("china", "flower"):
            mask = np.zeros_like(mask)
        Image.fromarray(mask).save(masks / f"{name}.png")
    out = tmp_path / "report.json"
    args = ["--model", folders["weights"], "--masks", str(masks), "--out", str(out)]
    assert main(_args(folders, *args, "--no-fid", "--quiet")) == 0
    notes = json.loads(out.read_text())["notes"]
    assert "2 image(s) had no hole in their mask (china, flower)" in " ".join(notes)
    assert "they are compared with themselves" in " ".join(notes)
    # Predictions are scored as given: not compared with themselves (the note said so).
    predictions = ["--predictions", str(root / "predictions"), "--masks", str(masks)]
    out = tmp_path / "given.json"
    assert main(_args(folders, *predictions, "--out", str(out), "--no-fid", "--quiet")) == 0
    report = json.loads(out.read_text())
    notes = " ".join(report["notes"])
    assert "(china, flower): l1_hole is null for them" in notes and "themselves" not in notes
    assert {row["name"]: row["l1"] > 0 for row in report["per_image"]}["china"]


def test_help_documents_every_flag():
    parser = build_parser()
    text = parser.format_help()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    expected = {"--model", "--predictions", "--images", "--masks", "--mask-type", "--protocol"}
    expected |= {"--out", "--batch-size", "--seed", "--fid", "--no-fid", "--inception-weights"}
    assert expected <= flags
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings


def test_strategy_options_parse_into_a_photo_strategy():
    from penet_tf.cli import strategy_from_args
    from penet_tf.evaluate import build_parser
    from penet_tf.high_resolution import PhotoStrategy

    base = ["--model", "m.weights.h5", "--images", "val/", "--mask-type", "centre"]
    base += ["--out", "r.json"]
    parser = build_parser()
    assert strategy_from_args(parser.parse_args(base)) is None  # the model's own / auto
    args = parser.parse_args([*base, "--strategy", "crop", "--margin", "64"])
    assert strategy_from_args(args) == PhotoStrategy("crop", margin=64)
    args = parser.parse_args([*base, "--no-residual-aggregation", "--model-size", "512"])
    assert strategy_from_args(args) == PhotoStrategy(residual_aggregation=False, model_size=512)
    with pytest.raises(ValueError, match="multiple of 64"):
        strategy_from_args(parser.parse_args([*base, "--model-size", "100"]))
