"""TEST DOUBLE for ``tensorflow_model_server``'s gRPC PredictionService. Test code only.

The real TF Serving binary cannot be installed on the machines that run these tests, so
this stands in for it: a ``grpc.server`` on 127.0.0.1 that implements the protocol of
``tensorflow_serving.apis`` (``Predict`` and ``GetModelMetadata``) over the export loaded
as ``tensorflow_model_server`` loads it (TensorFlow's SavedModel loader into a TF1
session, the signatures run by ``Session::Run`` on the SignatureDef's tensor names), so
that ``penet_tf.serving.client`` is tested over real gRPC against a real export. (Over
``tf.saved_model.load`` it hid that a real server could not run the export: a TF1
session restored one copy of each variable and the graph read another.)

It mirrors what TF Serving does before and after running a signature
(``tensorflow_serving/servables/tensorflow/predict_util.cc``, ``get_model_metadata_impl.cc``):

* unknown model name or version -> ``NOT_FOUND`` ("Servable not found for request: ...");
* unknown signature -> ``FAILED_PRECONDITION`` ('Serving signature key "x" not found.');
* missing or extra inputs -> ``INVALID_ARGUMENT`` ("input size does not match signature
  ... Missing but required: {...}"); an unknown alias -> ``INVALID_ARGUMENT``;
  an unknown ``output_filter`` alias -> ``INVALID_ARGUMENT``;
* a dtype that differs from the SignatureDef's -> ``INVALID_ARGUMENT`` ("Expects arg
  'image' to be uint8 but float is provided", as the TF runtime says);
* errors raised by the graph keep their TensorFlow status code (an
  ``InvalidArgumentError`` from the export's assertions -> ``INVALID_ARGUMENT`` with
  the assertion's message); any other exception -> ``INTERNAL``.

Like TF Serving, it feeds the request's tensors to the graph without checking their shapes
against the SignatureDef (``predict_util.cc`` checks the inputs' names): a 4-channel
image or an image without its batch axis reaches the export's own checks.

Not modelled: batching (``--enable_batching``), the REST API, model reloading and version
policies (it serves the highest numeric version under the base path), version labels,
``Classify``/``Regress``/``MultiInference`` (``UNIMPLEMENTED``).
"""

import contextlib
import os
import re
import socket
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class _Refusal(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _type_name(dtype_enum):
    """TF's C++ spelling: DT_FLOAT -> "float", DT_UINT8 -> "uint8"."""
    return types_pb2.DataType.Name(dtype_enum)[3:].lower()


def _graph_message(error):
    """The TF status message of ``error``, without the Python-side "Graph execution" header."""
    message = error.message
    if "<stack traces unavailable>" in message:
        message = message.split("<stack traces unavailable>", 1)[1]
    elif message.startswith("Graph execution error"):
        lines = message.split("\n")[1:]
        message = "\n".join(line for line in lines if not line.startswith(("Detected", "  ")))
    return message.strip()


def _memory_bytes(field, known=None):
    """VmRSS / VmHWM of this process from /proc/self/status (``known`` if given)."""
    if known is not None:
        return known
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _ndarray(proto):
    """``tf.make_ndarray`` without its copy for ``tensor_content`` (TF Serving converts a
    request tensor once; ``make_ndarray`` would copy it twice on the way to the graph)."""
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        shape = [dim.size for dim in proto.tensor_shape.dim]
        dtype = tf.as_dtype(proto.dtype).as_numpy_dtype
        return np.frombuffer(proto.tensor_content, dtype).reshape(shape)
    return tf.make_ndarray(proto)


class PredictionServiceDouble(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Serves the highest numeric version under ``base_path`` as model ``name``."""

    echo = False  # print each request's graph time on stdout (the __main__ server)

    def __init__(self, base_path, name):
        versions = [int(d) for d in os.listdir(base_path) if re.fullmatch(r"\d+", d)]
        if not versions:
            raise FileNotFoundError(f"no numeric version directory under {base_path}")
        self.name, self.version = name, max(versions)
        path = os.path.join(base_path, str(self.version))
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.session = tf.compat.v1.Session(graph=self.graph)
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signature_defs = meta_graph.signature_def
        self.requests = 0
        self.log = []  # (signature, seconds in the graph, "answered" or "refused")
        self._lock = threading.Lock()

    def _log(self, signature, start, outcome):
        entry = (signature, time.perf_counter() - start, outcome)
        self.log.append(entry)
        if self.echo:
            growth = _memory_bytes("VmHWM") - _memory_bytes("VmRSS", self._rss)
            print(f"request {signature} {entry[1]:.6f} {outcome} {growth}", flush=True)

    def _check_servable(self, spec):
        if spec.name != self.name:
            raise _Refusal(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})"
            )
        if spec.HasField("version") and spec.version.value != self.version:
            raise _Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({spec.name}, {spec.version.value})",
            )
        if spec.version_label:
            raise _Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: label {spec.version_label!r} (the test "
                "double has no version labels)",
            )

    def _inputs(self, signature, request):
        wanted, sent = set(signature.inputs), set(request.inputs)
        if len(wanted) != len(sent):
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
            )
        tensors = {}
        for alias, proto in request.inputs.items():
            if alias not in signature.inputs:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input tensor alias not found in signature: {alias}. Inputs expected "
                    f"to be in the set {{{','.join(sorted(wanted))}}}.",
                )
            info = signature.inputs[alias]
            if proto.dtype != info.dtype:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Expects arg '{alias}' to be {_type_name(info.dtype)} but "
                    f"{_type_name(proto.dtype)} is provided",
                )
            try:
                value = _ndarray(proto)
            except Exception:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias}"
                ) from None
            tensors[alias] = np.asarray(value, tf.as_dtype(info.dtype).as_numpy_dtype)
            del value
        return tensors

    def _predict(self, request):
        spec = request.model_spec
        self._check_servable(spec)
        signature_name = spec.signature_name or "serving_default"
        if signature_name not in self.signature_defs:
            raise _Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        signature = self.signature_defs[signature_name]
        tensors = self._inputs(signature, request)
        outputs = list(request.output_filter) or list(signature.outputs)
        for alias in outputs:
            if alias not in signature.outputs:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(signature.outputs))}}}.",
                )
        if len(set(outputs)) != len(outputs):
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias")
        if self.echo:  # measure the graph's own peak memory: reset the peak to now
            self._rss = _memory_bytes("VmRSS")
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
        start = time.perf_counter()
        try:
            # Fed unchecked (Session.run checks the shapes in Python; TF Serving does not)
            tensor = self.graph.get_tensor_by_name
            feeds = {
                tensor(signature.inputs[alias].name)._as_tf_output(): value
                for alias, value in tensors.items()
            }
            fetches = [tensor(signature.outputs[alias].name)._as_tf_output() for alias in outputs]
            values = self.session._call_tf_sessionrun(None, feeds, fetches, [], None)
            results = dict(zip(outputs, values, strict=True))
        except tf.errors.OpError as error:
            self._log(signature_name, start, "refused")
            code = _CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
            raise _Refusal(code, _graph_message(error)) from None
        self._log(signature_name, start, "answered")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        for alias in outputs:
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(results[alias])))
        return response

    def _metadata(self, request):
        if not request.HasField("model_spec"):
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        self._check_servable(request.model_spec)
        if not request.metadata_field:
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in self.signature_defs.items():
            signatures.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signatures)
        return response

    def _answer(self, handler, request, context):
        with self._lock:
            self.requests += 1
        try:
            return handler(request)
        except _Refusal as refusal:
            code, message = refusal.code, refusal.message
        except Exception as error:  # a bug in the double or TF: never take the server down
            code, message = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
        context.abort(code, message)

    def Predict(self, request, context):  # noqa: N802 (the gRPC method name)
        """TF Serving's ``Predict``."""
        return self._answer(self._predict, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        """TF Serving's ``GetModelMetadata`` (the ``signature_def`` field)."""
        return self._answer(self._metadata, request, context)


@contextlib.contextmanager
def closed_port():
    """A TCP port on 127.0.0.1 that nothing listens on while the block runs: bound, never
    listened on, so a connection is refused (a port only asked for and released could be
    taken meanwhile by the other test worker's connections)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


class ServingDouble:
    """Starts :class:`PredictionServiceDouble` on 127.0.0.1 (a free port); a context manager.

    ``address`` is ``"127.0.0.1:PORT"`` for the client; ``service`` is the servicer.
    """

    def __init__(self, base_path, name, max_workers=8):
        self.service = PredictionServiceDouble(base_path, name)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            options=[
                # TF Serving sets no practical message size limit (INT_MAX).
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2**31 - 1),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            self.service, self.server
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        if not port:
            raise OSError("could not bind a port on 127.0.0.1")
        self.address = f"127.0.0.1:{port}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc_info):
        self.server.stop(grace=None).wait()
        self.service.session.close()


if __name__ == "__main__":
    # python tests/serving_double.py BASE_PATH NAME: serves until stdin closes; prints
    # "penet_tf-imported BOOL address HOST:PORT" (a real server has no penet_tf: neither
    # has this process), then "request SIGNATURE SECONDS OUTCOME PEAK_GROWTH_BYTES" per
    # request: the signature's time and the peak RSS growth while it ran (the tests
    # measure a request's cost in this process, apart from the client's).
    PredictionServiceDouble.echo = True
    with ServingDouble(sys.argv[1], sys.argv[2]) as running:
        imported = any(name.split(".")[0] == "penet_tf" for name in sys.modules)
        print(f"penet_tf-imported {imported} address {running.address}", flush=True)
        sys.stdin.read()
