"""serving/: the TF Serving config files parse as TF Serving's protos and agree."""

import pathlib
import re
import subprocess

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

SERVING = pathlib.Path(__file__).resolve().parents[1] / "serving"


def _batching_parameters_class():
    """tensorflow.serving.BatchingParameters, as in TF Serving's session_bundle_config.proto.

    tensorflow-serving-api does not ship that proto; this rebuilds the message (field
    names, numbers and types copied from TF Serving 2.20) so the files are parsed as
    tensorflow_model_server would.
    """
    field = descriptor_pb2.FieldDescriptorProto
    fields = [
        ("max_batch_size", 1, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, ".google.protobuf.StringValue"),
        ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
    ]
    message = descriptor_pb2.DescriptorProto(name="BatchingParameters")
    for name, number, type_name in fields:
        message.field.add(
            name=name,
            number=number,
            type=field.TYPE_MESSAGE,
            type_name=type_name,
            label=field.LABEL_OPTIONAL,
        )
    message.field.add(
        name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED
    )
    message.field.add(
        name="pad_variable_length_inputs",
        number=7,
        type=field.TYPE_BOOL,
        label=field.LABEL_OPTIONAL,
    )
    proto = descriptor_pb2.FileDescriptorProto(
        name="penet_test_batching.proto",
        package="penet_test",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
        message_type=[message],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("penet_test.BatchingParameters")
    )


def test_models_config_parses_and_points_at_the_export_folder():
    config = text_format.Parse(
        (SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    (model,) = config.model_config_list.config
    assert model.name == "demo" and model.base_path == "/models/demo"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


@pytest.mark.parametrize("name", ["batching_parameters.txt", "batching_parameters_fixed_size.txt"])
def test_batching_parameters_parse(name):
    params = text_format.Parse((SERVING / name).read_text(), _batching_parameters_class()())
    assert params.max_batch_size.value >= 1 and params.num_batch_threads.value >= 1
    if params.enable_large_batch_splitting.value:
        # Never merge requests of different sizes: one image per executed batch.
        assert params.max_execution_batch_size.value == 1
        assert not params.allowed_batch_sizes
    else:
        assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value
    assert not params.pad_variable_length_inputs  # padding would change the inpainting


def test_launchers_use_the_same_files_and_flags():
    script = (SERVING / "run_tf_serving.sh").read_text()
    compose = (SERVING / "docker-compose.yml").read_text()
    subprocess.run(["bash", "-n", str(SERVING / "run_tf_serving.sh")], check=True)
    for flag in (
        "--enable_batching=true",
        "--enable_model_warmup=true",
        "--model_config_file_poll_wait_seconds=60",
        "--rest_api_timeout_in_ms=60000",
    ):
        assert flag in script and flag in compose, flag
    for text in (script, compose):
        assert re.search(r"--model_config_file=/config/models.config", text)
        assert re.search(r"--batching_parameters_file=/config/batching_parameters.txt", text)
        assert "--port=8500" in text and "--rest_api_port=8501" in text
    assert "../savedmodels:/models:ro" in compose and "./models.config:" in compose
    assert '"$models:/models:ro"' in script
