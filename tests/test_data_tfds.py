"""A TFDS source: records are read by penet_tf.image_io like files, bad ones are skipped,
epochs are shuffled so that a resume reads no earlier epoch, preparing errors are clear.

The datasets are real TFDS datasets, built offline into ``tmp_path`` by the builder below
(its records are encoded bytes stored as given, so a record can be corrupt), then read
back by name as a user's ``data.source: tfds`` config reads them.
"""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from penet_tf.data.images import ImageSource, inpainting_dataset, shuffled_records
from penet_tf.image_io import EXIF_ORIENTATION, read_rgb

DATA = {"image_size": [64, 64]}
MASK = {"type": "square"}


def _encoded(array, kind="PNG", orientation=None):
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(array).save(buffer, format=kind, exif=exif)
    return buffer.getvalue()


def _records(config):
    rng = np.random.default_rng(0)
    png = _encoded(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    if config == "unreadable":
        return [png[: len(png) // 2], b""]
    rotated = _encoded(rng.integers(0, 255, (32, 56, 3), dtype=np.uint8), "JPEG", orientation=6)
    grey16 = _encoded((rng.integers(0, 65535, (36, 44)) // 257 * 257).astype(np.uint16))
    return [png, png[: len(png) // 2], b"", b"not an image", rotated, grey16]


class PenetTestPhotos(tfds.core.GeneratorBasedBuilder):
    """Six records ("mixed": three readable, three not), two unreadable ones
    ("unreadable"), ("manual") an error until its files are put in by hand, or ("photo")
    the mixed records in a feature named ``photo``, beside a ``label``."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="mixed"),
        tfds.core.BuilderConfig(name="unreadable"),
        tfds.core.BuilderConfig(name="manual"),  # its files must be downloaded by hand
        tfds.core.BuilderConfig(name="photo"),
        tfds.core.BuilderConfig(name="features"),  # never prepared: its features only
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the photos in manual_dir."

    def _info(self):
        image = tfds.features.Image(encoding_format="png")
        if self.builder_config.name == "photo":
            features = {"photo": image, "label": tfds.features.ClassLabel(num_classes=2)}
        elif self.builder_config.name == "features":
            depth = tfds.features.Image(shape=(None, None, 1), dtype=np.float32)
            camera = tfds.features.FeaturesDict({"image": image})
            features = {"depth": depth, "camera": camera, "grey16": image}
        else:
            features = {"image": image}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        if self.builder_config.name == "manual":
            dl_manager.manual_dir  # noqa: B018 - TFDS raises when it is missing or empty
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        if self.builder_config.name == "photo":
            for key, data in enumerate(_records("mixed")):
                yield key, {"photo": data, "label": key % 2}
        else:
            for key, data in enumerate(_records(self.builder_config.name)):
                yield key, {"image": data}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    for config in ("mixed", "unreadable"):
        PenetTestPhotos(config=config, data_dir=str(path)).download_and_prepare()
    return str(path)


def test_tfds_records_decode_like_files_and_bad_ones_are_skipped(data_dir, tmp_path):
    source = ImageSource(
        {"source": "tfds", "name": "penet_test_photos/mixed", "data_dir": data_dir}
    )
    assert len(source) == 6 and source.item_kind == "TFDS record"
    # Each readable record gives the pixels its bytes give as a file (EXIF rotation, 16 bit).
    shapes = []
    for record_id, data in source.tfds_dataset.as_numpy_iterator():
        image, ok = source.decode(record_id, data)
        if ok:
            path = tmp_path / "record"
            path.write_bytes(data)
            np.testing.assert_array_equal(image.numpy(), read_rgb(str(path)))
            shapes.append(tuple(image.shape[:2]))
    assert sorted(shapes) == [(36, 44), (40, 48), (56, 32)]  # the JPEG shown upright
    assert source.unreadable_count == 3
    assert all(name.startswith("penet_test_photos-train.tfrecord") for name in source.skipped_files)
    # Training streams on past them (more than an epoch).
    dataset = inpainting_dataset(source, DATA, MASK, batch_size=2, seed=1)
    for (image, mask), _ in dataset.take(5):
        assert image.shape == (2, 64, 64, 3) and mask.shape == (2, 64, 64, 1)
    assert source.skipped >= 6


def test_tfds_images_from_a_feature_named_by_image_key(tmp_path):
    config = {"source": "tfds", "name": "penet_test_photos/photo", "data_dir": str(tmp_path)}
    # A wrong key is refused before anything is downloaded or read, naming the choices.
    for key in ("image", "label"):
        with pytest.raises(ValueError, match=f"no image feature '{key}'.*features: 'photo'"):
            ImageSource({**config, "image_key": key, "download": True})
    assert not list(tmp_path.iterdir())
    PenetTestPhotos(config="photo", data_dir=str(tmp_path)).download_and_prepare()
    source = ImageSource({**config, "image_key": "photo"})
    decoded = [source.decode(*record) for record in source.tfds_dataset.as_numpy_iterator()]
    assert sorted(tuple(image.shape[:2]) for image, ok in decoded if ok) == [
        (36, 44),
        (40, 48),
        (56, 32),
    ]


def test_tfds_float_and_nested_image_features_are_named_before_any_download(tmp_path):
    """TFDS packs a float32 image's values into RGBA PNG bytes: they were decoded and
    trained on as colours, unsaid. A FeaturesDict's image (waymo's camera_FRONT/image) was
    refused as "its image features: none"."""
    config = {"source": "tfds", "name": "penet_test_photos/features", "download": True}
    config["data_dir"] = str(tmp_path)
    with pytest.raises(ValueError, match="'depth' holds float32 pixels .*8- or 16-bit"):
        ImageSource({**config, "image_key": "depth"})
    with pytest.raises(ValueError, match="'camera/image' .* is nested in a FeaturesDict"):
        ImageSource({**config, "image_key": "camera/image"})
    message = "features: 'depth', 'grey16'; nested, not read: 'camera/image'"
    with pytest.raises(ValueError, match=re.escape(message)):
        ImageSource({**config, "image_key": "image"})
    assert not list(tmp_path.iterdir())  # nothing downloaded or prepared


def test_tfds_bad_splits_are_named(data_dir):
    config = {"source": "tfds", "name": "penet_test_photos/mixed", "data_dir": data_dir}
    for split, reason in (
        ("train[:0]", "corresponds to no data"),  # was TFDS's message alone
        ("train[10:20]", "incompatible with 6 examples"),
        ("trian", "Unknown split 'trian'"),
    ):
        with pytest.raises(
            ValueError, match=rf"data.split '{re.escape(split)}' of TFDS .*{reason}"
        ):
            ImageSource({**config, "split": split})


def test_tfds_split_with_no_readable_record_fails_at_once(data_dir):
    config = {"source": "tfds", "name": "penet_test_photos/unreadable", "data_dir": data_dir}
    with pytest.raises(ValueError, match="None of the 2 TFDS records could be decoded"):
        ImageSource(config)


@pytest.fixture
def global_seed():
    """The trainer's ``keras.utils.set_random_seed(config.seed)``, seed 0 (the demo's)."""
    tf.random.set_seed(0)
    yield
    tf.random.set_seed(None)


def test_tfds_epochs_are_shuffled_permutations_and_resume_reads_no_earlier_epoch(
    data_dir, global_seed
):
    source = ImageSource(
        {"source": "tfds", "name": "penet_test_photos/mixed", "data_dir": data_dir}
    )
    in_order = [record_id for record_id, _ in source.tfds_dataset.as_numpy_iterator()]
    ids = sorted(in_order)
    stream = shuffled_records(source.tfds_dataset, 6, seed=3, buffer_size=6).take(18)
    elements = [(int(index), record_id) for index, (record_id, _) in stream.as_numpy_iterator()]
    assert [index for index, _ in elements] == list(range(18))
    epochs = [[record_id for _, record_id in elements[e * 6 : (e + 1) * 6]] for e in range(3)]
    assert all(sorted(epoch) == ids for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != ids  # shuffled, per epoch
    # A buffer of 4: blocks of records 0-3 and 4-5 (the last one short), each permuted.
    blocks = shuffled_records(source.tfds_dataset, 6, seed=3, buffer_size=4).take(12)
    blocks = [record_id for _, (record_id, _) in blocks.as_numpy_iterator()]
    for start in (0, 6):
        assert sorted(blocks[start : start + 4]) == sorted(in_order[:4])
        assert sorted(blocks[start + 4 : start + 6]) == sorted(in_order[4:])
    assert blocks[:6] != blocks[6:]
    # Resuming at element 8 (epoch 1) gives the same elements, and reads the records of
    # epochs 1 and 2 only (at most 12), never epoch 0's (which would make at least 18).
    reads = []

    def read(record_id):
        reads.append(record_id.numpy())
        return record_id

    counted = source.tfds_dataset.map(
        lambda record_id, data: (tf.py_function(read, [record_id], tf.string), data)
    )
    resumed = shuffled_records(counted, 6, seed=3, start=8, buffer_size=6).take(10)
    resumed = [(int(index), record_id) for index, (record_id, _) in resumed.as_numpy_iterator()]
    assert resumed == elements[8:]
    assert 10 <= len(reads) <= 12
    # The training stream resumes to the same pixels and masks.
    whole = list(inpainting_dataset(source, DATA, MASK, 2, seed=5).take(4))
    again = list(
        inpainting_dataset(source, DATA, MASK, 2, seed=5, start=int(whole[2][1][0])).take(2)
    )
    for a, b in zip(whole[2:], again, strict=True):
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
        np.testing.assert_array_equal(a[0][0].numpy(), b[0][0].numpy())
        np.testing.assert_array_equal(a[0][1].numpy(), b[0][1].numpy())


def test_tfds_finds_a_registered_dataset_s_code_for_its_download():
    """``data.download=true`` reaches the download: TFDS looks for a registered dataset's
    checksums beside its code through ``importlib_resources``, which TFDS does not
    require (tensorflow/datasets#11212) and penet_tf does."""
    assert tfds.builder_cls("dtd").code_path.name == "dtd.py"


def test_tfds_dataset_to_download_by_hand_is_one_clear_error(tmp_path):
    config = {"source": "tfds", "name": "penet_test_photos/manual", "data_dir": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="is not prepared under"):
        ImageSource(config)
    with pytest.raises(FileNotFoundError, match="(?s)TFDS cannot prepare .*Put the photos in"):
        ImageSource({**config, "download": True})


def test_tfds_errors_that_were_tracebacks_are_one_line(tmp_path, monkeypatch):
    """A version TFDS does not have raised AssertionError, and a failed download TFDS's
    own DownloadError (a plain Exception): tracebacks where every other error is a line."""
    with pytest.raises(ValueError, match=r"TFDS cannot load 'dtd:99.0.0': .*only: "):
        ImageSource({"source": "tfds", "name": "dtd:99.0.0", "data_dir": str(tmp_path)})

    class DownloadError(Exception):  # (what TFDS raises on an HTTP 404)
        pass

    def unreachable(self, *args, **kwargs):
        raise DownloadError("Failed to get url http://127.0.0.1:1/x.zip. HTTP code: 404.")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", unreachable)
    config = {"source": "tfds", "name": "dtd", "data_dir": str(tmp_path), "download": True}
    with pytest.raises(OSError, match=r"could not download or prepare 'dtd' under .*HTTP code"):
        ImageSource(config)
    with pytest.raises(ValueError, match=r"no dataset named 'nope_h43' \(neither registered nor"):
        ImageSource({**config, "name": "nope_h43"})
