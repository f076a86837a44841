"""penet_tf against the released PyTorch PEN-Net, side by side, in one run.

    python benchmarks/compare_released.py --reference ~/src/PEN-Net-for-Inpainting \
        --threads 2 --out benchmarks/results.json

``--reference`` is a checkout of the authors' code (researchmm/PEN-Net-for-Inpainting;
never committed here) and needs PyTorch (``pip install 'penet_tf[torch]'``). Without it
only penet_tf is measured.

Every measurement runs in a fresh process (benchmarks/_worker.py) so that its peak memory
is its own; the two implementations alternate, round after round, with the same thread
count, on the same random input (centred half-size hole). A process over ``--time-limit``
or ``--memory-limit-gb`` is stopped and recorded as failed: the released network is
allowed to fail at large sizes. Times are medians over all timed repeats after warm-up.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _worker import machine  # (benchmarks/ is on the path of a script run there)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_worker.py")

# name: (kind, size, batch, warm-up runs, timed runs per process)
CASES = {
    "forward-256-b1": ("forward", 256, 1, 2, 7),
    "forward-256-b8": ("forward", 256, 8, 1, 3),
    "forward-512-b1": ("forward", 512, 1, 1, 3),
    "forward-1024-b1": ("forward", 1024, 1, 0, 1),
    "forward-2048-b1": ("forward", 2048, 1, 0, 1),
    "train-256-b4": ("train", 256, 4, 2, 5),
    # The composited inference of the signatures and CLIs (penet_tf.inference.composite_uint8,
    # its finest attention restricted to the hole's rows), penet_tf only: one centred
    # square hole of the given side.
    "composite-1024-hole512": ("composite", 1024, 1, 0, 1),
    "composite-1024-hole64": ("composite", 1024, 1, 0, 1),
    "composite-2048-hole1024": ("composite", 2048, 1, 0, 1),
}
HOLES = {
    "composite-1024-hole512": 512,
    "composite-1024-hole64": 64,
    "composite-2048-hole1024": 1024,
}


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_worker(case, time_limit, memory_limit_mb):
    """Runs one measurement; returns its result dict with a status."""
    env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE)}
    started = time.perf_counter()
    # The worker's output goes to files, not pipes: a worker writing more than a pipe's
    # 64 KiB (TensorFlow's verbose logging) blocked while this loop polled, and was
    # recorded as over the time limit.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        process = subprocess.Popen(
            [sys.executable, WORKER, json.dumps(case)],
            stdout=out_file,
            stderr=err_file,
            text=True,
            env=env,
        )
        peak, status = 0.0, "ok"
        while process.poll() is None:
            peak = max(peak, _rss_mb(process.pid))
            if peak > memory_limit_mb:
                status = f"stopped: over the {memory_limit_mb / 1024:g} GiB memory limit"
            elif time.perf_counter() - started > time_limit:
                status = f"stopped: over the {time_limit:.0f} s time limit"
            if status != "ok":
                process.kill()
                break
            time.sleep(0.2)
        process.wait()
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    result = {"status": status, "wall_s": time.perf_counter() - started, "polled_peak_mb": peak}
    if status == "ok":
        if process.returncode != 0:
            result["status"] = f"failed (exit {process.returncode}): {err.strip()[-300:]}"
        else:
            result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def summarize(runs):
    times = [t for run in runs if run["status"] == "ok" for t in run["times"]]
    failures = [run["status"] for run in runs if run["status"] != "ok"]
    peaks = [max(run.get("peak_rss_mb", 0), run["polled_peak_mb"]) for run in runs]
    return {
        "median_s": median(times) if times and not failures else None,
        "times_s": times,
        "peak_rss_mb": max(peaks) if peaks else None,
        "status": failures[0] if failures else "ok",
    }


def main(argv=None):
    from penet_tf.cli import positive_int  # (0 rounds or runs crashed the statistics)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="checkout of the released PyTorch PEN-Net code")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    # (0: torch.set_num_threads raised, the release "failed", while TensorFlow took every core)
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count())
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternations per case")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per process")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=20.0, help="GiB (1024^3 bytes; default 20)"
    )
    parser.add_argument(
        "--penet-dtypes",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16", "attention-bfloat16"],
        help="also time penet_tf under mixed_bfloat16 (bfloat16), or with only the "
        "attention's matrix products in bfloat16 (attention-bfloat16)",
    )
    parser.add_argument(
        "--xla", action="store_true", help="also time penet_tf compiled with XLA (jit_compile)"
    )
    parser.add_argument(
        "--attention-chunk-mb",
        type=int,
        help="penet_tf's Generator(attention_chunk_mb=...) (default: the Generator's)",
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.reference and not os.path.isfile(os.path.join(args.reference, "model", "pennet.py")):
        parser.error(f"{args.reference} is not a PEN-Net checkout (no model/pennet.py)")

    report = {
        "machine": machine(),
        "threads": args.threads,
        "attention_chunk_mb": args.attention_chunk_mb,
        "cases": {},
    }
    print(json.dumps(report["machine"]))
    for name in args.cases:
        kind, size, batch, warmup, repeats = CASES[name]
        impls = [("penet", dtype, False) for dtype in args.penet_dtypes]
        if args.xla:
            impls += [("penet", dtype, True) for dtype in args.penet_dtypes]
        if args.reference and kind != "composite":  # the release has no composite path
            impls.append(("released", "float32", False))
        keys = [f"{impl}-{dtype}" + ("-xla" if jit else "") for impl, dtype, jit in impls]
        runs = {key: [] for key in keys}
        # One round for the very large cases: each process takes minutes.
        rounds = 1 if size >= 1024 else args.rounds
        for _ in range(rounds):
            for key, (impl, dtype, jit) in zip(keys, impls, strict=True):
                case = {
                    "impl": impl,
                    "kind": kind,
                    "size": size,
                    "batch": batch,
                    "warmup": warmup,
                    "repeats": repeats,
                    "threads": args.threads,
                    "dtype": dtype,
                    "jit": jit,
                    "reference": args.reference,
                    "hole": HOLES.get(name, size // 2),
                    "chunk_mb": args.attention_chunk_mb,
                }
                result = run_worker(case, args.time_limit, args.memory_limit_gb * 1024)
                runs[key].append(result)
                print(f"  {name} {key}: {result['status']}", flush=True)
        summary = {key: summarize(value) for key, value in runs.items()}
        penet, released = summary.get("penet-float32"), summary.get("released-float32")
        if penet and released and penet["median_s"] and released["median_s"]:
            summary["ratio_time"] = penet["median_s"] / released["median_s"]
            summary["round_ratios"] = round_ratios(runs["penet-float32"], runs["released-float32"])
        report["cases"][name] = summary
        print(format_case(name, summary), flush=True)
    if args.out:
        with open(args.out + ".tmp", "w") as handle:
            json.dump(report, handle, indent=2)
        os.replace(args.out + ".tmp", args.out)
    print(format_table(report))
    return 0


def _fmt(entry):
    if entry is None:
        return "—"
    # (MiB / 1024: GiB; the figures printed before 2026-12-06 said "GB" for GiB)
    memory = f"{entry['peak_rss_mb'] / 1024:.2f} GiB" if entry["peak_rss_mb"] else "?"
    if entry["status"] != "ok":
        return f"{entry['status']} (peak {memory})"
    return f"{entry['median_s']:.3f} s, {memory}"


def round_ratios(penet_runs, released_runs):
    """penet / released of each round's medians (a round = one process of each, back to
    back), so that a load that comes and goes shows up as spread, not as a wrong figure."""
    return [
        median(penet["times"]) / median(released["times"])
        for penet, released in zip(penet_runs, released_runs, strict=True)
        if penet["status"] == "ok" and released["status"] == "ok"
    ]


def spread(ratios):
    """``min / median / max`` of per-round ratios, as printed."""
    if not ratios:
        return "—"
    return f"{min(ratios):.2f} / {median(ratios):.2f} / {max(ratios):.2f}"


_DERIVED = ("ratio_time", "round_ratios")


def format_case(name, summary):
    parts = [f"{key}: {_fmt(value)}" for key, value in summary.items() if key not in _DERIVED]
    if "ratio_time" in summary:
        parts.append(f"ratio {summary['ratio_time']:.2f}x")
        parts.append(f"per-round ratio min / median / max {spread(summary['round_ratios'])}")
    return f"{name}: " + "; ".join(parts)


def format_table(report):
    keys = sorted({k for case in report["cases"].values() for k in case if k not in _DERIVED})
    lines = [
        "| case | " + " | ".join(keys) + " | penet / released | per-round min / median / max |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for name, case in report["cases"].items():
        ratio = f"{case['ratio_time']:.2f}x" if "ratio_time" in case else "—"
        cells = [_fmt(case.get(key)) for key in keys]
        rounds = spread(case.get("round_ratios", []))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {rounds} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
