"""gRPC client for a PEN-Net model served by TF Serving (``tensorflow_model_server``).

Command line::

    python -m penet_tf.serving.client --server localhost:8500 --model demo \\
        --image photo.png --mask mask.png --out inpainted.png

Files are read as every penet_tf path reads them (``penet_tf.image_io``: EXIF orientation
applied, 16-bit scaled to 8 bits). The mask may be any image the size of the photo: a
pixel is a hole where its largest colour channel is at least 128 of 255 (alpha ignored;
a mask holding only 0 and 1 is a 0/1 mask, 1 = hole); ``--mask-from-alpha`` takes the
hole from the photo's alpha channel instead (transparent = hole). The output is written
atomically (a temporary file renamed into place).

Library::

    from penet_tf.serving import InpaintClient

    with InpaintClient("localhost:8500", "demo", timeout=30) as client:
        inpainted = client.inpaint(image, mask)  # uint8 [H, W, 3] (or a batch)
        png = client.inpaint_bytes(open("a.png", "rb").read(), open("m.png", "rb").read())

Failures raise ``ServingError`` (with the gRPC ``code`` and the server's ``details``)
whose message says what went wrong: server unreachable, deadline exceeded, a request the
server rejected (its reason), an unknown model or signature. Bad inputs noticed before
sending raise ``ValueError``.
"""

import argparse
import io
import math
import os
import re
import struct
import sys
import urllib.parse

import grpc
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from penet_tf import image_io
from penet_tf.cli import run, version_int
from penet_tf.errors import PenetError
from penet_tf.image_io import (
    alpha_mask,
    colour_profile,
    no_hole_note,
    open_image,
    read_rgb,
    to_rgb,
    turned_hint,
    with_colour_profile,
)
from penet_tf.io_utils import check_file_target, sweep_temporaries, write_bytes_atomically

DEFAULT_TIMEOUT = 30.0
MAX_MESSAGE_BYTES = 512 * 1024 * 1024  # a 2048 x 2048 request is 16 MiB; gRPC's default is 4
SIGNATURES = ("serving_default", "inpaint_bytes")
MAX_TIMEOUT = 1e8  # seconds (three years): gRPC's deadlines overflow at about 9.2e9
# Formats the export's inpaint_bytes signature decodes as penet_tf.image_io does; others
# are sent as PNG (TensorFlow reads a GIF's transparent colour and palette BMPs otherwise,
# or refuses them; an animated file goes as its first frame).
SERVER_DECODES = {"PNG", "JPEG", "WEBP"}


class ServingError(PenetError, RuntimeError):
    """A request that TF Serving (or the connection to it) failed.

    Attributes:
        code: the ``grpc.StatusCode``.
        details: the server's (or gRPC's) own message.
    """

    exit_status = 1  # the CLI's status for a server error (2: bad input)

    def __init__(self, message, code=None, details=""):
        super().__init__(message)
        self.code = code
        self.details = details


def _short(details):
    """The message of a TF assertion without its ``[Condition ...]`` and node dump."""
    # (up to the "] [Condition" that follows: the message may hold "[batch, H, W, 1]")
    match = re.search(r"assertion failed: \[(.*?)\](?: \[|\s*$|\n)", details, re.DOTALL)
    if match:
        return match.group(1).replace("\\'", "'").strip()
    return details.split("\n\t [[")[0].strip()


def _proxy_note(details, server):
    """A note for a connection that failed through a proxy: gRPC takes the first of
    ``grpc_proxy``, ``https_proxy``, ``http_proxy`` that is set (an ``http://`` one) for
    every host that ``no_grpc_proxy`` / ``no_proxy`` does not name, this machine's too (a
    shell with a company's proxy could not reach the TF Serving beside it, and the error
    did not say why). Said only where gRPC's ``details`` show it went there: "HTTP proxy
    returned ...", or the proxy's port as the address it failed to connect to. The proxy
    is named by scheme, host and port only (not its user name or password)."""
    name = next((n for n in ("grpc_proxy", "https_proxy", "http_proxy") if n in os.environ), "")
    value = os.environ.get(name, "")
    if not value:
        return ""
    parts = urllib.parse.urlsplit(value if "://" in value else f"//{value}")
    try:
        port = parts.port or 80
    except ValueError:  # (not a port: gRPC cannot use it either)
        return ""
    failed_there = re.search(rf"ipv[46]:\S*:{port}: ", details) and not server.endswith(f":{port}")
    if not parts.hostname or ("HTTP proxy" not in details and not failed_there):
        return ""
    return (
        f" (gRPC went through the proxy {parts.hostname}:{port} of ${name}: if the server "
        "is not reached that way, add its host to no_proxy)"
    )


class InpaintClient:
    """Client for the signatures of ``python -m penet_tf.export`` behind TF Serving.

    Args:
        server: ``HOST:PORT`` of TF Serving's gRPC port (8500 by default).
        model: the model name in TF Serving's ``models.config``.
        timeout: seconds each request may take (a gRPC deadline).
        version: a model version to ask for; ``None`` = whatever the server serves.
    """

    def __init__(self, server, model, timeout=DEFAULT_TIMEOUT, version=None):
        address = re.fullmatch(r"\S+:(\d+)|unix:\S+", server)
        if not address:
            raise ValueError(f"server must be HOST:PORT (e.g. localhost:8500), got {server!r}")
        if address.group(1) is not None and not 1 <= int(address.group(1)) <= 65535:
            raise ValueError(f"server {server!r}: the port must be 1 to 65535")
        host, _, port = server.rpartition(":")
        if ":" in host and re.fullmatch(r"[0-9A-Fa-f:.]+(%\S+)?", host):  # (not "[::1]", "dns:")
            # gRPC read "::1:8500" as the address ::0.1.133.0, port 443: "cannot reach", or
            # "no answer within 3 s; the server may be overloaded"
            raise ValueError(
                f"server {server!r}: an IPv6 address goes in brackets: [{host}]:{port}"
            )
        # gRPC fails at once on inf or nan, and on deadlines past its int64 nanoseconds
        # (about 9.2e9 s): every request failed within 0.00 s.
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise ValueError(
                f"timeout must be a positive number of seconds up to {MAX_TIMEOUT:g}, got {timeout}"
            )
        self.server, self.model, self.timeout, self.version = server, model, timeout, version
        self.closed = False
        self.channel = grpc.insecure_channel(
            server,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self):
        """Closes the gRPC channel; a request after this is a ``ValueError`` naming it."""
        self.closed = True
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _model_spec(self, signature=""):
        spec = model_pb2.ModelSpec(name=self.model, signature_name=signature)
        if self.version is not None:
            spec.version.value = int(self.version)
        return spec

    def _error(self, error):
        code, details = error.code(), error.details() or ""
        where = f"TF Serving at {self.server}"
        model = self.model if self.version is None else f"{self.model} version {self.version}"
        if code == grpc.StatusCode.UNAVAILABLE and "queue" in details.lower():
            message = f"{where} is overloaded, retry later: {details}"  # batching queue full
        elif code == grpc.StatusCode.UNAVAILABLE:
            message = (
                f"cannot reach {where}, or it dropped the connection ({details}); is "
                "tensorflow_model_server running there, with that gRPC --port?"
            ) + _proxy_note(details, self.server)
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = (
                f"no answer from {where} within {self.timeout:g} s; the server may be "
                "overloaded or the image too large (raise the timeout)"
            )
        elif code == grpc.StatusCode.INVALID_ARGUMENT:
            message = f"the server rejected the request: {_short(details)}"
        elif code == grpc.StatusCode.NOT_FOUND:
            message = f"{where} does not serve model {model!r}: {details}"
        elif code == grpc.StatusCode.FAILED_PRECONDITION:
            message = f"{where} cannot run this request for model {model!r}: {details}"
            if "Could not find variable" in details:  # (TF Serving's TF1 session)
                message += (
                    " (an export written by penet_tf before 2026-12-06 22:00 UTC fails so in TF "
                    "Serving: export its weights again with python -m penet_tf.export)"
                )
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and "CLIENT: Received" in details:
            # (this client's own limit: an answer over it was "TF Serving ... is out of
            # resources"; a request over it is refused before sending, by ``predict``)
            message = (
                f"the answer of {where} is over the {MAX_MESSAGE_BYTES / 2**20:g} MiB that this "
                f"client takes in one message: send fewer or smaller images ({details})"
            )
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            message = f"{where} is out of resources (request too large or queue full): {details}"
        else:
            message = f"{where} failed the request ({code.name}): {details}"
        return ServingError(message, code, details)

    def _call(self, method, request):
        if self.closed:  # (gRPC's own words: "Cannot invoke RPC on closed channel!")
            raise ValueError(
                f"this InpaintClient for {self.server} is closed (a request after close() or "
                "after its with block): make another"
            )
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def predict(self, inputs, signature="serving_default", output_filter=()):
        """One raw ``Predict`` call: ``{name: array}`` in, ``{name: numpy array}`` out.

        The arrays are sent as they are (checked only against the size of a gRPC message,
        ``MAX_MESSAGE_BYTES``); the other methods check first.
        """
        request = predict_pb2.PredictRequest(
            model_spec=self._model_spec(signature), output_filter=list(output_filter)
        )
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        size = request.ByteSize()
        if size > MAX_MESSAGE_BYTES:  # (gRPC's refusal was "TF Serving is out of resources")
            raise ValueError(
                f"the request is {size / 2**20:.0f} MiB, over the "
                f"{MAX_MESSAGE_BYTES / 2**20:g} MiB that this client sends in one message: send "
                "fewer images per request (one photo this large is over any export's default "
                "limit of pixels too)"
            )
        response = self._call(self.stub.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _outputs(self, result, signature, *names):
        """``result[name]`` for each of ``names``, or a ServingError naming what the model
        answered instead (another model served under this name: a KeyError traceback)."""
        missing = [name for name in names if name not in result]
        if missing:
            raise ServingError(
                f"model {self.model!r} at {self.server} answered {signature} without "
                f"{', '.join(map(repr, missing))} (its outputs: {sorted(result) or 'none'}): "
                "is it a penet_tf export?"
            )
        return [result[name] for name in names]

    def _answer(self, value, signature, name, dtype, shape):
        """``value`` if it is ``dtype`` of ``shape``, what the export answers for the
        request; else a ServingError naming what the model answered (another model or a
        broken export: a 40 x 32 image for an 80 x 64 photo was written, exit status 0;
        a float answer was a traceback)."""
        if value.dtype != dtype or value.shape != tuple(shape):
            raise ServingError(
                f"model {self.model!r} at {self.server} answered {signature} with {name!r} "
                f"{value.dtype} {list(value.shape)}, not {np.dtype(dtype)} {list(shape)} for "
                "the images sent: is it a penet_tf export?"
            )
        return value

    def inpaint(self, image, mask):
        """Inpaints with ``serving_default``.

        Args:
            image: uint8 [H, W, 3] or a batch [B, H, W, 3].
            mask: [H, W] or [H, W, 1] (or [B, H, W] / [B, H, W, 1]): a hole where >= 128,
                or the 1s of a 0/1 mask (the mask rule of ``penet_tf.image_io``).

        Returns:
            uint8 like ``image``: the known pixels unchanged, the holes filled.
        """
        image, mask, single = _check_arrays(image, mask)
        result = self.predict({"image": image, "mask": mask})
        (result,) = self._outputs(result, "serving_default", "inpainted")
        result = self._answer(result, "serving_default", "inpainted", np.uint8, image.shape)
        return result[0] if single else result

    def predict_float(self, image, mask):
        """``predict_float``: float image in [-1, 1], mask (1 = hole) -> (output, inpainted)."""
        image = np.asarray(image, np.float32)
        mask = np.asarray(mask, np.float32)
        single = image.ndim == 3
        if single:
            image, mask = image[None], mask[None]
        if mask.ndim == 3:
            mask = mask[..., None]
        _check_not_empty(len(image))
        result = self.predict({"image": image, "mask": mask}, "predict_float")
        output, inpainted = self._outputs(result, "predict_float", "output", "inpainted")
        output = self._answer(output, "predict_float", "output", np.float32, image.shape)
        inpainted = self._answer(inpainted, "predict_float", "inpainted", np.float32, image.shape)
        return (output[0], inpainted[0]) if single else (output, inpainted)

    def inpaint_bytes(self, image_bytes, mask_bytes):
        """Inpaints encoded images with ``inpaint_bytes`` (PNG, JPEG, GIF, BMP or WebP; the
        server refuses what its decoders would read otherwise: a GIF with a transparent
        colour, palette BMPs, animated WebP).

        Args:
            image_bytes: an encoded image (``bytes``) or a list of them.
            mask_bytes: the masks, likewise (largest colour channel, then the mask rule
                of ``penet_tf.image_io``). EXIF orientation is not applied by the server.

        Returns:
            PNG ``bytes`` (a list for list inputs).
        """
        single = isinstance(image_bytes, _ENCODED)
        images = _encoded_list(image_bytes, "image_bytes", single)
        masks = _encoded_list(mask_bytes, "mask_bytes", single)
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        _check_not_empty(len(images))
        result = self.predict(
            {"image_bytes": np.array(images, object), "mask_bytes": np.array(masks, object)},
            "inpaint_bytes",
        )
        (result,) = self._outputs(result, "inpaint_bytes", "inpainted_bytes")
        result = self._answer(result, "inpaint_bytes", "inpainted_bytes", object, [len(images)])
        for index, (sent, answer) in enumerate(zip(images, result, strict=True)):
            size, answered = _header_size(sent), _png_size(answer)
            if answered is None or (size is not None and answered != size):
                raise ServingError(
                    f"model {self.model!r} at {self.server} answered inpaint_bytes[{index}] "
                    + (
                        "with data that is not an 8-bit RGB PNG"
                        if answered is None
                        else "with a {}x{} PNG".format(*answered)
                    )
                    + (" for a {}x{} image".format(*size) if size else "")
                    + ": is it a penet_tf export?"
                )
        return result[0] if single else list(result)

    def metadata(self):
        """The served signatures: ``{name: {"inputs": {...}, "outputs": {...}}}``.

        Each tensor is ``(dtype name, shape)`` with -1 for dynamic dimensions.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(), metadata_field=["signature_def"]
        )
        response = self._call(self.stub.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)

        def tensors(infos):
            return {
                name: (
                    tf.as_dtype(info.dtype).name,
                    [dim.size for dim in info.tensor_shape.dim],
                )
                for name, info in infos.items()
            }

        return {
            name: {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
            for name, sig in signatures.signature_def.items()
            if not name.startswith("__")
        }


_ENCODED = bytes | bytearray | memoryview


def _encoded_list(value, name, single):
    """``value`` (one encoded image when ``single``, else a list of them) as a list of
    ``bytes``. A path or a str is refused by name: ``bytes(str)`` failed with "string
    argument without an encoding", a ``Path`` with "'PosixPath' object is not iterable",
    and a ``memoryview`` was taken for a list of its byte values."""

    def encoded(item, where):
        if isinstance(item, _ENCODED):
            return bytes(item)
        hint = (
            ": read the file first (open(path, 'rb').read()), or use "
            "penet_tf.serving.client.inpaint_files"
            if isinstance(item, str | os.PathLike)
            else ""
        )
        raise TypeError(f"{where} must be encoded image bytes, got {type(item).__name__}{hint}")

    if single or isinstance(value, _ENCODED | str | os.PathLike):
        return [encoded(value, name)]
    try:
        items = list(value)  # a list, tuple, array, generator, dict.values() ...
    except TypeError:
        raise TypeError(
            f"{name} must be encoded image bytes or a list of them, got {type(value).__name__}"
        ) from None
    return [encoded(item, f"{name}[{index}]") for index, item in enumerate(items)]


def _png_size(data):
    """(width, height) of an 8-bit RGB PNG from its header (what the export's
    ``inpaint_bytes`` answers), else None."""
    if not isinstance(data, bytes) or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return (width, height) if (depth, colour) == (8, 2) else None


def _header_size(data):
    """(width, height) of an encoded image as its header says (the server decodes it
    without an EXIF rotation), or None where Pillow cannot tell."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - the server judges what Pillow cannot read
        return None


def _check_not_empty(count):
    """Refuses a request of no images here: a TF Serving that pads batches up to
    ``allowed_batch_sizes`` aborts on one (it pads with a row of a tensor that has none)."""
    if count == 0:
        raise ValueError("empty batch: send at least one image")


def _check_arrays(image, mask):
    """uint8 image [B, H, W, 3] and uint8 0/255 mask [B, H, W, 1]; ValueError otherwise."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 (0..255), got {image.dtype}; use predict_float for floats"
        )
    single = image.ndim == 3
    if single:
        image, mask = image[None], mask[None]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] or [B, H, W, 3] (RGB), got {image.shape}")
    if mask.ndim == 3:
        mask = mask[..., None]
    if mask.ndim != 4 or mask.shape[-1] != 1:
        raise ValueError(f"mask must be [H, W] or [H, W, 1] (or batched), got {mask.shape}")
    if mask.shape[:3] != image.shape[:3]:
        raise ValueError(
            f"image and mask sizes differ: image {image.shape[:3]} vs mask {mask.shape[:3]} "
            "(batch, height, width)"
        )
    _check_not_empty(len(image))
    # The mask rule (penet_tf.image_io), per image: the server applies it again. Each mask
    # read as the library reads a mask array (a soft float mask or an int16 -1 was sent as
    # holes; refused by name, mask by mask: not judged by the batch's largest value).
    holes = np.array(
        [image_io.binary_mask(image_io.mask_array(one)) for one in mask], np.uint8
    ).reshape(mask.shape)
    holes *= np.uint8(255)
    return image, holes, single


def read_image(path):
    """An image file as uint8 RGB [H, W, 3], as every penet_tf path reads it
    (``penet_tf.image_io.read_rgb``: EXIF orientation applied, 16-bit scaled to 8 bits)."""
    return read_rgb(path)


def read_mask(path):
    """A mask file as uint8 [H, W, 1]: 255 = hole, by the mask rule of
    ``penet_tf.image_io`` (largest colour channel >= 128, alpha ignored; 0/1 masks: 1)."""
    return image_io.read_mask(path) * np.uint8(255)


def _encode(array, image_format="PNG", profile=None):
    buffer = io.BytesIO()
    # WebP losslessly: lossy, the known pixels came back up to 211 levels off.
    options = {"lossless": True, "exact": True} if image_format == "WEBP" else {}
    if profile:  # the photo's ICC profile (image_io.colour_profile)
        options["icc_profile"] = profile
    Image.fromarray(np.squeeze(array, -1) if array.shape[-1] == 1 else array).save(
        buffer, format=image_format, **options
    )
    return buffer.getvalue()


# Formats that keep every pixel as it is (WebP written losslessly by ``_encode``). Others
# that Pillow writes did not, with "wrote" and exit status 0: GIF's palette (known
# pixels up to 22 levels off), AVIF / JPEG (lossy), ICO / ICNS (a 64 x 9 thumbnail, a
# 1024 x 1024 stretch), PDF / EPS (not an image to read back).
EXACT_FORMATS = {"PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "PPM": ".ppm"}
# ... under their own extensions (Pillow writes .pbm / .pgm / .pfm as an RGB PPM too).
EXACT_EXTENSIONS = (".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm")


def _output_format(path):
    """The Pillow format ``path``'s extension names, if it keeps every pixel and Pillow
    writes it (checked before the request: a .xbm or .h5 was refused only after the
    server had answered)."""
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None:
        raise ValueError(f"--out {path}: unknown image extension {extension!r} (use .png)")
    if image_format not in EXACT_FORMATS or extension not in EXACT_EXTENSIONS:
        raise ValueError(
            f"--out {path}: {image_format} would not keep the photo's pixels as they are "
            f"(lossy, a palette, resized or not an image); use one of "
            f"{', '.join(EXACT_FORMATS.values())}"
        )
    try:  # a 2 x 2 RGB image written in memory: what the result will need
        _encode(np.zeros((2, 2, 3), np.uint8), image_format)
    except Exception as error:  # noqa: BLE001 - Pillow's writers raise their own kinds
        raise ValueError(
            f"--out {path}: Pillow cannot write an RGB image as {image_format} "
            f"({str(error) or type(error).__name__}); use .png"
        ) from None
    return image_format


def inpaint_files(
    client,
    image_path,
    mask_path,
    out_path,
    signature="serving_default",
    mask_from_alpha=False,
    note=None,
):
    """Reads ``image_path`` and ``mask_path``, inpaints through ``client``, writes ``out_path``.

    Files are read as every penet_tf path reads them (``penet_tf.image_io``); with
    ``mask_from_alpha`` (and no ``mask_path``) the hole is the image's transparent part.
    For ``inpaint_bytes`` the file's own bytes are sent when the server decodes them to
    the same pixels (PNG, JPEG, still WebP, without an EXIF rotation), else a PNG of the
    decoded image (GIF, BMP, animated or turned files, other formats). ``note``, if given,
    is called with a one-line note when the mask has no hole (the photo is written
    unchanged). Returns the inpainted uint8 [H, W, 3] array.
    """
    if (mask_path is None) == (not mask_from_alpha):
        raise ValueError("give either a mask file or mask_from_alpha")
    out_format = _output_format(out_path)
    check_file_target(out_path, "--out", inputs=(image_path, mask_path))  # not the photo
    if not os.path.isdir(os.path.dirname(os.path.abspath(out_path))):
        raise FileNotFoundError(f"output folder does not exist: {os.path.dirname(out_path)}")
    sweep_temporaries(os.path.dirname(os.path.abspath(out_path)))  # what a killed run left
    source = open_image(image_path, "image")
    image = to_rgb(source)
    profile = colour_profile(image_path)  # kept in the result: the colours the photo showed
    if mask_from_alpha:
        mask_path = image_path
        mask = alpha_mask(source, image_path) * np.uint8(255)
    else:
        mask = read_mask(mask_path)
    if image.shape[:2] != mask.shape[:2]:
        hint = mask.shape[:2] == image.shape[1::-1] and turned_hint((image_path, mask_path))
        raise ValueError(
            f"image and mask sizes differ: {image_path} is {image.shape[1]}x{image.shape[0]}, "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} (width x height)"
            + (f" as displayed ({hint})" if hint else "")
        )
    if note is not None and not mask.any():
        note(no_hole_note(image_path, None if mask_from_alpha else mask_path))
    if signature == "inpaint_bytes":
        with open(image_path, "rb") as handle:
            data = handle.read()
        if (
            source.format not in SERVER_DECODES
            or source.orientation != 1
            or getattr(source, "is_animated", False)
            or source.mode == "CMYK"  # (Adobe's inverted CMYK: TensorFlow reads it as stored)
        ):
            data = _encode(image)  # the server would decode it otherwise (or sideways)
        png = client.inpaint_bytes(data, _encode(mask))
        result = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        if out_format == "PNG":
            write_bytes_atomically(with_colour_profile(png, profile), out_path)
            return result
    elif signature == "serving_default":
        result = client.inpaint(image, mask)
    else:
        raise ValueError(f"unknown signature {signature!r}; expected one of {SIGNATURES}")
    write_bytes_atomically(_encode(result, out_format, profile), out_path)
    return result


def _main(argv):
    """The command line; returns the exit status (0 ok, 1 server error, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.serving.client",
        description="Inpaint an image with a PEN-Net model served by TF Serving (gRPC).",
    )
    parser.add_argument(
        "--server", default="localhost:8500", help="TF Serving gRPC HOST:PORT (default %(default)s)"
    )
    parser.add_argument("--model", required=True, help="model name in models.config")
    parser.add_argument("--image", required=True, help="the photo (PNG, JPEG, ...)")
    masks = parser.add_mutually_exclusive_group(required=True)
    masks.add_argument(
        "--mask",
        help="the mask, same size: a hole where the largest colour channel is >= 128 of 255 "
        "(antialiased edges: half-opaque or more), or the 1s of a 0/1 mask",
    )
    masks.add_argument(
        "--mask-from-alpha",
        action="store_true",
        help="take the hole from the image's alpha channel: transparent (alpha below 128) = hole",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="where to write the result: .png (or .webp, .tif, .bmp, .ppm: formats that "
        "keep every pixel)",
    )
    parser.add_argument(
        "--signature",
        choices=SIGNATURES,
        default="serving_default",
        help="serving_default sends decoded uint8 pixels, inpaint_bytes encoded files (the "
        "photo's own bytes where the server decodes them the same, else a PNG) "
        "(default %(default)s)",
    )
    parser.add_argument("--version", type=version_int, help="model version (default: the server's)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per request (default %(default)s)",
    )
    args = parser.parse_args(argv)
    with InpaintClient(args.server, args.model, args.timeout, args.version) as client:
        result = inpaint_files(
            client,
            args.image,
            args.mask,
            args.out,
            args.signature,
            args.mask_from_alpha,
            note=lambda text: print(f"note: {text}", file=sys.stderr),
        )
    print(f"wrote {args.out} ({result.shape[1]}x{result.shape[0]})")
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
