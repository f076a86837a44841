"""serving/: the TF Serving config files parse as TF Serving's protos and agree."""

import os
import pathlib
import re
import shutil
import subprocess
import time

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
    # No padding up to allowed sizes: TF Serving pads with a row of the batch's last
    # request, and aborts on a request of zero images (Tensor::Slice's CHECK).
    assert not params.allowed_batch_sizes
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


def _local_launcher(tmp_path, bin_dir, models, **pipes):
    """``run_tf_serving.sh --local`` with ``bin_dir`` (fake programs) first on PATH, the
    models in ``models`` and its temporaries in ``tmp_path``."""
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MODELS_DIR": str(models)}
    env["TMPDIR"] = str(tmp_path)
    return subprocess.Popen(
        ["bash", str(SERVING / "run_tf_serving.sh"), "--local"], text=True, env=env, **pipes
    )


def test_local_launcher_rewrites_paths_and_stops_its_server(tmp_path):
    """--local with a fake tensorflow_model_server: a models folder named with '&' (sed
    wrote the match itself into base_path), and a TERM to the launcher (the server kept
    running, orphaned, while its config copy was deleted)."""
    bin_dir, models = tmp_path / "bin", tmp_path / "a&b#c" / "savedmodels"
    bin_dir.mkdir()
    models.mkdir(parents=True)
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(
        "#!/bin/bash\n"
        'for a in "$@"; do case $a in --model_config_file=*) echo "CONFIG ${a#*=}";'
        ' cat "${a#*=}";; esac; done\n'
        'echo "SERVER $$"\nexec sleep 60\n'
    )
    fake.chmod(0o755)
    launcher = _local_launcher(tmp_path, bin_dir, models, stdout=subprocess.PIPE)
    lines = []
    while not (lines and lines[-1].startswith("SERVER ")):
        lines.append(launcher.stdout.readline().strip())
        assert lines[-1] or launcher.poll() is None, lines
    config = next(line.split()[1] for line in lines if line.startswith("CONFIG "))
    assert f'base_path: "{models}/demo"' in lines
    server = int(lines[-1].split()[1])
    launcher.terminate()
    assert launcher.wait(timeout=30) == 143
    launcher.stdout.close()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{server}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{server}")  # the server stopped with it
    assert not os.path.exists(config)  # and its config copy is gone


def test_local_launcher_stopped_before_its_server_starts_leaves_nothing(tmp_path):
    """A TERM while the launcher still writes the config copy (a supervisor stopping it
    at once): its trap was set only after the server started, so bash died by the signal
    (not 143) and left the copy; set before, under ``set -u`` the trap's ``$!`` (no
    server yet) was an unbound variable (exit 1, the copy left)."""
    bin_dir, models = tmp_path / "bin", tmp_path / "savedmodels"
    bin_dir.mkdir()
    models.mkdir()
    (bin_dir / "tensorflow_model_server").write_text("#!/bin/sh\nexec sleep 60\n")
    started = tmp_path / "sed.started"
    # sed writes the copy: a slow one holds the launcher there
    real_sed = shutil.which("sed")
    (bin_dir / "sed").write_text(f'#!/bin/sh\ntouch {started}\nsleep 2\nexec {real_sed} "$@"\n')
    for name in ("tensorflow_model_server", "sed"):
        (bin_dir / name).chmod(0o755)
    launcher = _local_launcher(tmp_path, bin_dir, models, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not started.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    launcher.terminate()
    assert launcher.wait(timeout=30) == 143, launcher.stderr.read()
    launcher.stderr.close()
    assert not list(tmp_path.glob("penet-models.*"))  # no config copy left
