"""One 256² inpaint of the full-width generator in the browser demo, op by op.

    .venv/bin/python benchmarks/web_wasm.py                 # wasm, 1 and 2 threads
    .venv/bin/python benchmarks/web_wasm.py --before --fast-slices on off --rounds 3

Builds the full-width generator (10.2 M parameters, random weights: the time does not
depend on them), exports it, converts it to TF.js as ``python -m penet_tf.convert --to
tfjs`` does (the graph rewritten for the wasm backend, ``penet_tf.tfjs_rewrite``) and, with
``--before``, also as tensorflowjs_converter writes it; serves each with ``penet_tf.demo``
and runs ``demos/web/tests/benchmark.mjs`` in headless Chromium: one warm-up inpaint, then
``--runs`` timed ones (input tensors to output values), plus one under ``tf.profile`` in
the first round. Configurations (graph, backend, wasm threads, the page's faster slice
kernels on/off) alternate within every round, so a busy machine slows them alike; medians
are over all rounds' timed runs, with min and max. Prints each configuration's line and
its ten most expensive kernels; ``--json`` writes everything.

The page never runs this model on WebGL (its largest tensor is past WebGL's exact range;
demos/web/README.md), so ``--backends webgl`` shows the page falling back to wasm. Needs
demos/web/node_modules (scripts/setup_browser_tests.sh) and the tensorflowjs virtualenv
(.tfjs-venv).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
WEB = os.path.join(REPO, "demos", "web")

from _worker import machine_line  # noqa: E402  (benchmarks/ is on a script's path)


def build_models(workdir, base_channels, size, variants):
    """Exports a random full-width generator and converts it once per variant."""
    import keras

    from penet_tf import Generator
    from penet_tf.convert import convert
    from penet_tf.export import export_generator

    keras.utils.set_random_seed(0)
    generator = Generator(base_channels=base_channels)
    generator.build()
    export_generator(generator, os.path.join(workdir, "export"), version=1)
    models = {}
    for variant in variants:
        out = os.path.join(workdir, variant)
        convert(
            os.path.join(workdir, "export", "1"),
            "tfjs",
            out,
            size=size,
            log=lambda *_: None,
            tfjs_wasm_rewrites=variant == "rewritten",
        )
        models[variant] = out
    return models


def serve(model_dir):
    """``penet_tf.demo``'s server for ``model_dir`` on a free port, in a thread."""
    from penet_tf.demo import make_server

    server = make_server(model_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def run_page(url, backend, threads, fast_slices, runs, profile, timeout):
    command = ["node", "tests/benchmark.mjs", "--url", url, "--backend", backend]
    command += ["--runs", str(runs), "--fast-slices", fast_slices]
    if threads:
        command += ["--threads", str(threads)]
    if profile:
        command.append("--profile")
    try:
        result = subprocess.run(
            command, cwd=WEB, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:  # one slow page is a failed record, not the end
        return {"error": f"over the {timeout:g} s timeout"}
    if result.returncode:
        return {"error": (result.stdout + result.stderr)[-2000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(label, records):
    times = [t for record in records for t in record.get("timesMs", [])]
    if not times:
        errors = [record["error"] for record in records if "error" in record]
        return f"{label}: failed: {errors[:1]}"
    # A failed page (an "error" record) is counted, not summarized: it crashed the
    # summary (KeyError 'warmupMs') after every page had run.
    good = [record for record in records if "timesMs" in record]
    failed = len(records) - len(good)
    first = good[0]
    details = first.get("details") or {}
    return (
        f"{label}: median {statistics.median(times) / 1000:.2f} s "
        f"(min {min(times) / 1000:.2f}, max {max(times) / 1000:.2f}, {len(times)} runs; "
        f"warm-up {statistics.median(r['warmupMs'] for r in good) / 1000:.2f} s) "
        f"backend {first['backend']} {json.dumps(details)}"
        + (f"; {failed} of {len(records)} pages failed" if failed else "")
    )


def top_kernels(record, count=10):
    lines = []
    total = record.get("profiledMs") or 0
    for kernel in (record.get("kernels") or [])[:count]:
        largest = kernel["largest"]
        lines.append(
            f"    {kernel['name']:<22} x{kernel['count']:<3} {kernel['ms']:8.0f} ms "
            f"{100 * kernel['ms'] / max(total, 1e-9):5.1f} %   largest {largest['ms']:.0f} ms "
            f"{largest['inputs']} -> {largest['outputs']}"
        )
    return [f"  profiled kernels: {total:.0f} ms in all"] + lines


def _label(configuration):
    variant, backend, threads, fast = configuration
    if backend != "wasm":
        return f"{variant} / {backend}"
    threads = f"{threads} thread(s)" if threads else "TF.js's default threads"
    return f"{variant} graph / wasm / {threads} / fast slices {fast}"


def main(argv=None):
    from penet_tf.cli import positive_int  # (0 rounds or runs crashed the statistics)

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=positive_int, default=3, help="timed runs per page (default 3)"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=2, help="alternating rounds (default 2)"
    )
    parser.add_argument(
        "--converter-runs",
        type=positive_int,
        default=1,
        help="timed runs per page for the slow 'converter' variant (default 1)",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time the page as it was: tensorflowjs_converter's graph, TF.js's kernels",
    )
    parser.add_argument("--backends", nargs="+", default=["wasm"], help="wasm, webgl, cpu")
    parser.add_argument(
        "--threads",
        nargs="+",
        type=positive_int,
        default=[1, 2],
        help="wasm thread counts to compare (default 1 2)",
    )
    parser.add_argument(
        "--fast-slices",
        nargs="+",
        choices=("on", "off"),
        default=["on"],
        help="the page's faster wasm slice kernels (demos/web/wasm_kernels.js); 'off': TF.js's",
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--base-channels", type=int, default=32, help="32: the released width")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per page")
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    print(machine_line(), flush=True)  # (the date, CPU model, memory and versions)
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    configurations = [
        ("rewritten", backend, threads, fast)
        for backend in args.backends
        for threads in (args.threads if backend == "wasm" else [None])
        for fast in (args.fast_slices if backend == "wasm" else ["on"])
    ]
    if args.before:  # the page as it was: the converter's graph, TF.js's kernels and threads
        configurations.insert(0, ("converter", "wasm", None, "off"))
    variants = sorted({configuration[0] for configuration in configurations})
    records = {configuration: [] for configuration in configurations}
    with tempfile.TemporaryDirectory(prefix="penet-web-bench-") as workdir:
        models = build_models(workdir, args.base_channels, args.size, variants)
        servers = {variant: serve(path) for variant, path in models.items()}
        try:
            for round_index in range(args.rounds):
                for configuration in configurations:
                    variant, backend, threads, fast = configuration
                    runs = args.converter_runs if variant == "converter" else args.runs
                    record = run_page(
                        servers[variant][1],
                        backend,
                        threads,
                        fast,
                        runs,
                        round_index == 0,
                        args.timeout,
                    )
                    records[configuration].append(record)
                    label = f"round {round_index + 1} {_label(configuration)}"
                    times = [round(t) for t in record.get("timesMs", [])]
                    print(f"{label}: {times or record.get('error')} ms", flush=True)
        finally:
            for server, _ in servers.values():
                server.shutdown()
                server.server_close()
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"one {args.size}² inpaint, base_channels={args.base_channels}:")
    for configuration, results in records.items():
        print(summarize(_label(configuration), results))
        if results and results[0].get("kernels"):
            print("\n".join(top_kernels(results[0])))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({" / ".join(map(str, key)): value for key, value in records.items()}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
