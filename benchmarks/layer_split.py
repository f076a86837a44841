"""Where the generator's forward spends its time, layer by layer, in penet_tf and in the
released PyTorch network.

    python benchmarks/layer_split.py --reference ~/src/PEN-Net-for-Inpainting \
        [--size 256] [--threads 2] [--rounds 3] [--runs 5]

``compare_released.py`` gives the whole forward's ratio; this says which layers make it.
Both networks run the same forward (batch 1, full width, random weights, centred
half-size hole, compare_released.py's input), each round in two fresh processes, penet_tf
first on even rounds and the release first on odd ones. The time goes to seven groups: the
encoder (``dw_conv01`` ... ``dw_conv06``), the five attention layers (``at_conv05`` ...
``at_conv01``, with their fuse convolutions), and the decoder (everything else: the
up-sampling convolutions, the ``torgb`` heads, the last two convolutions, the resizes and
concatenations; in penet_tf also the masking of the input).

penet_tf: the op times of ``--runs`` forwards of a ``tf.function`` under TensorFlow's
profiler, grouped by the layer scope in each op's name (one inter-op thread, so the ops
run one after another and their times add up to the forward). The release: forward hooks
on the generator's modules (PyTorch runs eagerly and synchronously on the CPU), the
decoder taking what the hooks of the encoder and the attention layers leave of the
forward. Each process also prints its forwards' median wall time without the profiler
or the hooks.

Prints per group: milliseconds per forward (median over rounds, min-max), its share of
the forward, and penet_tf / released.
"""

import argparse
import collections
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from _worker import centre_mask, machine_line, random_image, released_inputs, released_model

GROUPS = ("encoder", "at_conv05", "at_conv04", "at_conv03", "at_conv02", "at_conv01", "decoder")


def group_of(layer):
    """The group of a layer name (``dw_conv03``, ``at_conv01``, ``up_conv02``, ...)."""
    if layer.startswith("dw_conv"):
        return "encoder"
    if layer.startswith("at_conv"):
        return layer[:9]
    return "decoder"


def penet_split(size, threads, runs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from penet_tf import Generator

    keras.utils.set_random_seed(0)
    image = tf.constant(random_image(1, size))
    mask = tf.constant(centre_mask(1, size))
    generator = Generator()
    generator.build()
    forward = tf.function(lambda: generator(image, mask)[0])
    wall = timed(lambda: forward().numpy(), runs)
    with tempfile.TemporaryDirectory() as directory:
        tf.profiler.experimental.start(directory)
        for _ in range(runs):
            forward().numpy()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as handle:
            space.ParseFromString(handle.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                # Op events are named "scope/.../op_name:OpType".
                name = names.get(event.metadata_id, "")
                if ":" not in name or name.startswith("ExecutorState"):
                    continue
                scopes = [re.sub(r"_\d+$", "", part) for part in name.split("/")[1:-1]]
                layer = next((s for s in scopes if s.startswith(("dw_conv", "at_conv"))), "")
                totals[group_of(layer)] += event.duration_ps / 1e9 / runs  # ms per forward
    return {"wall_ms": wall, "groups": dict(totals)}


def released_split(size, threads, runs, reference):
    torch, pennet = released_model(reference, threads)
    generator = pennet.InpaintGenerator().eval()
    _, mask, inputs = released_inputs(torch, size, 1)

    def forward():
        with torch.no_grad():
            generator(inputs, mask)

    wall = timed(forward, runs)
    totals, started = collections.Counter(), {}
    handles = []
    for name, module in generator.named_children():
        if group_of(name) == "decoder":
            continue

        def start(module, args, name=name):
            started[name] = time.perf_counter()

        def stop(module, args, output, name=name):
            totals[group_of(name)] += (time.perf_counter() - started[name]) * 1e3 / runs

        handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]
    begin = time.perf_counter()
    for _ in range(runs):
        forward()
    hooked = (time.perf_counter() - begin) * 1e3 / runs
    for handle in handles:
        handle.remove()
    totals["decoder"] = hooked - sum(totals.values())
    return {"wall_ms": wall, "groups": dict(totals)}


def timed(function, runs):
    """Median wall milliseconds of ``runs`` calls after two warm-up calls."""
    for _ in range(2):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def spread(values):
    return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"


def main():
    from penet_tf.cli import positive_int  # (0 rounds or runs crashed the statistics)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="checkout of the released code")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--runs", type=positive_int, default=5, help="forwards per process")
    parser.add_argument("--worker", choices=("penet", "released"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.reference, "model", "pennet.py")):
        parser.error(f"--reference {args.reference!r} has no model/pennet.py (the released code)")
    if args.worker:
        if args.worker == "penet":
            result = penet_split(args.size, args.threads, args.runs)
        else:
            result = released_split(args.size, args.threads, args.runs, args.reference)
        print(json.dumps(result), flush=True)
        return
    print(machine_line())
    results = {"penet": [], "released": []}
    for index in range(args.rounds):
        order = ("penet", "released") if index % 2 == 0 else ("released", "penet")
        for impl in order:
            command = [sys.executable, os.path.abspath(__file__), "--worker", impl]
            command += ["--reference", args.reference, "--size", str(args.size)]
            command += ["--threads", str(args.threads), "--runs", str(args.runs)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[impl].append(json.loads(output.strip().splitlines()[-1]))
    print(
        f"forward {args.size}^2, batch 1, {args.threads} threads, {args.rounds} rounds of "
        f"{args.runs} forwards; ms per forward, median over rounds (min-max)"
    )
    for impl in ("penet", "released"):
        walls = [r["wall_ms"] for r in results[impl]]
        profiled = [sum(r["groups"].values()) for r in results[impl]]
        print(f"  {impl:8s} forward {spread(walls)} unprofiled, {spread(profiled)} split")
    print(f"  {'group':10s} {'released':>20s} {'share':>6s} {'penet_tf':>20s} {'share':>6s}  ratio")
    for group in GROUPS:
        cells, medians = [], {}
        for impl in ("released", "penet"):
            values = [r["groups"].get(group, 0.0) for r in results[impl]]
            totals = [sum(r["groups"].values()) for r in results[impl]]
            share = statistics.median(v / t for v, t in zip(values, totals, strict=True))
            cells.append(f"{spread(values):>20s} {share:6.1%}")
            medians[impl] = statistics.median(values)
        ratio = medians["penet"] / max(medians["released"], 1e-9)
        print(f"  {group:10s} {cells[0]} {cells[1]}  {ratio:.2f}x")


if __name__ == "__main__":
    main()
