"""Shared test set-up: quiet TensorFlow, locate ../shared, small helpers.

The README runs the suite on two pytest-xdist workers with ``--dist loadfile``: each test
module runs whole on one worker, so its module-scoped fixtures (exports, conversions, a
browser) are built once. (``loadgroup`` would be finer, but with pytest 9.2 it silently
stops grouping: pytest-xdist issue 1386.) Long modules are split by topic so the two
workers finish together, e.g. ``test_training``, ``test_training_interruptions`` and
``test_training_strategies``, and the longest modules are collected first."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# pytest-xdist's workers share the machine's cores: each worker's TensorFlow runs an op on
# its share of them (one thread each for the README's two workers on 2 cores), not on a
# pool as large as the machine (two such pools oversubscribed the cores: 80 tests of the
# inpaint, evaluate and training modules took 0.90-0.92x the time with one thread, two
# alternating rounds on 2026-12-07). Subprocesses inherit it; a user's own setting stays.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1:
    _CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _SHARE = max(1, (_CPUS or 1) // _WORKERS)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(_SHARE))
# The serving double, the demo server and the workers listen on this machine: a CI
# runner's http_proxy / https_proxy (which gRPC and urllib honour) sent their requests
# to the proxy instead, and every such test failed with "connection refused".
_hosts = [h for n in ("no_proxy", "NO_PROXY") for h in os.environ.get(n, "").split(",") if h]
os.environ["no_proxy"] = os.environ["NO_PROXY"] = ",".join(
    dict.fromkeys(_hosts + ["127.0.0.1", "localhost", "::1"])
)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The longest modules first (their durations in a two-worker run on 2026-12-07): with
# ``--dist loadfile`` a free worker takes the next module in collection order, and a long
# module taken last keeps one worker busy while the other idles. The rest keep their order.
LONGEST_MODULES_FIRST = (
    "test_training_interruptions.py",
    "test_export.py",
    "test_convert.py",
    "test_training.py",
    "test_inpaint_cli.py",
    "test_serving.py",
    "test_training_strategies.py",
    "test_high_resolution_strategies.py",
    "test_released_run.py",
    "test_generator.py",
    "test_image_io.py",
    "test_web_demo.py",
    "test_data.py",
    "test_evaluate_cli.py",
    "test_attention_transfer.py",
    "test_convert_torch.py",
    "test_metrics.py",
    "test_masks.py",
    "test_training_parity.py",
    "test_spectral_norm.py",
    "test_high_resolution.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-module order


@pytest.fixture(scope="module")
def loads():
    """The dict a module's ``load_once`` keeps its loaded inpainters in."""
    return {}


def load_once(monkeypatch, cli, path, loaded):
    """Makes ``cli.load_inpainter`` (a CLI module's import of it) load ``path`` once per
    set of arguments, kept in the dict ``loaded`` (module-scoped by the caller): each load
    built the generator (or a SavedModel's signature) and traced it again, seconds per
    ``main``. The same arguments give the same Inpainter, which holds no state between
    calls; other paths (broken files, SavedModels that tests rewrite) load as ever."""
    original = cli.load_inpainter

    def load(model, strategy=None, given=None):
        if os.fspath(model) != os.fspath(path):
            return original(model, strategy, given)
        key = (repr(strategy), repr(sorted((given or {}).items())))
        if key not in loaded:
            loaded[key] = original(model, strategy, given)
        return loaded[key]

    monkeypatch.setattr(cli, "load_inpainter", load)


REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE = SHARED / "reference" / "fixtures" / "official_256"


@pytest.fixture(scope="session")
def official_fixture():
    """The released network's outputs on a real photo (../shared/reference/fixtures)."""
    if not (FIXTURE / "case.npz").is_file():
        raise FileNotFoundError(
            f"Equivalence fixture missing: {FIXTURE}. The repository must sit beside ../shared."
        )
    case = dict(np.load(FIXTURE / "case.npz"))
    case["x"] = case["image"][None].astype(np.float32) / 127.5 - 1.0
    case["m"] = case["mask"][None, ..., None].astype(np.float32)
    case["gen"] = str(FIXTURE / "gen.pth")
    case["dis"] = str(FIXTURE / "dis.pth")
    return case


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A tiny stand-in image folder of real photographs (the training tests';
    test_metrics has its own ``photos``)."""
    from training_helpers import make_photos

    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def dead_pid():
    """The id of a process that has ended (what a ``kill -9`` leaves behind)."""
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="session")
def thin_savedmodel(tmp_path_factory):
    """ONE thin export (``penet_tf.export`` of a base_channels=4 generator with varied
    weights, ``max_pixels`` 300 x 300) shared by every test that needs a SavedModel:
    ``BASE/thin/1`` (``tests/conversion_helpers.py``)."""
    from conversion_helpers import thin_export

    return thin_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def thin_weights(tmp_path_factory):
    """The generator weights of ``thin_savedmodel`` (``generator.weights.h5`` + config)."""
    from conversion_helpers import thin_weights

    return thin_weights(tmp_path_factory.getbasetemp())
