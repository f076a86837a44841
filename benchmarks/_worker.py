"""One timed measurement in a fresh process (used by compare_released.py).

    python benchmarks/_worker.py '{"impl": "penet", "kind": "forward", "size": 256, ...}'

Prints one JSON line: the per-repeat times (after warm-up) and the peak RSS of the process.
Fresh processes keep each measurement's peak memory its own.
"""

import importlib.metadata
import json
import os
import resource
import sys
import time
import types

import numpy as np


def peak_rss_mb():
    """This process's own peak resident memory (VmHWM), MiB. ``ru_maxrss`` survives exec:
    a worker started by a parent holding 792 MiB (TensorFlow and torch imported) reported
    792 MiB for the released network's 256^2 forward, whose own peak is 539-577 MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine():
    """The machine a benchmark ran on: CPU model, cores, memory and versions."""
    import platform

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    versions = {}
    for module in ("tensorflow", "keras", "torch", "numpy"):  # (read without importing)
        try:
            versions[module] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            versions[module] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        **versions,
    }


def machine_line():
    """``machine()`` as the one line every benchmark prints first (a figure names its
    machine and date)."""
    info = machine()
    versions = ", ".join(
        f"{name} {info[name]}" for name in ("tensorflow", "keras", "torch") if info[name]
    )
    return (
        f"# {info['date']}, {info['host']}: {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gb']} GiB; Python {info['python']}, {versions}"
    )


def random_image(batch, size):
    """The random input both networks get, NHWC in [-1, 1] (the release's is this one
    transposed: drawn in each layout, the two pictures differed)."""
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def centre_mask(batch, size, hole=None):
    """A centred square hole, ``hole`` pixels a side (half the size by default)."""
    hole = size // 2 if hole is None else hole
    top = (size - hole) // 2
    mask = np.zeros((batch, size, size, 1), np.float32)
    mask[:, top : top + hole, top : top + hole] = 1
    return mask


def penet(case):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(case["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(case["threads"])
    import keras

    from penet_tf import Discriminator, Generator

    keras.utils.set_random_seed(0)
    size, batch = case["size"], case["batch"]
    policy = "mixed_bfloat16" if case.get("dtype") == "bfloat16" else "float32"
    jit = bool(case.get("jit"))  # XLA: tf.function(jit_compile=True)
    image = tf.constant(random_image(batch, size))
    mask = tf.constant(centre_mask(batch, size))
    # "attention-bfloat16": float32 network, bfloat16 attention products.
    attention_dtype = "bfloat16" if case.get("dtype") == "attention-bfloat16" else None
    chunk = {} if case.get("chunk_mb") is None else {"attention_chunk_mb": case["chunk_mb"]}
    generator = Generator(dtype=policy, attention_matmul_dtype=attention_dtype, **chunk)
    generator.build()
    if case["kind"] == "forward":
        run = tf.function(lambda: generator(image, mask)[0], jit_compile=jit)
        return lambda: run().numpy()
    if case["kind"] == "composite":
        # ``serve``: what every SavedModel signature and the inpaint CLI run (the request
        # checks, then the composite with at_conv01 restricted to the hole's rows).
        from penet_tf.inference import serve
        from penet_tf.inpainting import NO_PIXEL_LIMIT

        pixels = tf.constant(np.round((random_image(batch, size) + 1) * 127.5).astype(np.uint8))
        hole = tf.constant(centre_mask(batch, size, case.get("hole")).astype(np.uint8))
        spec = [tf.TensorSpec([None, None, None, c], tf.uint8) for c in (3, 1)]
        run = tf.function(  # (jit_compile: the "-xla" composite rows were not XLA)
            lambda i, m: serve(generator, i, m, max_pixels=NO_PIXEL_LIMIT),
            input_signature=spec,
            jit_compile=jit,
        )
        run(pixels[:, :64, :64], hole[:, :64, :64])  # traced on a small image, not timed
        return lambda: run(pixels, hole).numpy()
    from penet_tf.training import PENetGAN
    from penet_tf.training.optimizers import TorchAdam

    # The released step: PyTorch's Adam, the default (PyTorch-style) spectral norm.
    gan = PENetGAN(generator, Discriminator(dtype=policy))
    gan.compile(TorchAdam(1e-4, 0.5, 0.999), TorchAdam(1e-4, 0.5, 0.999))
    gan.build()
    step = tf.function(gan.released_step, jit_compile=jit)
    return lambda: float(step((image, mask))["g_loss"])


def released_model(reference, threads):
    """``torch`` and the released ``model.pennet`` module from a checkout of its code
    (``reference``), with ``threads`` CPU threads and seed 0."""
    sys.path.insert(0, reference)
    try:
        import torchvision  # noqa: F401
    except Exception:  # the released model module imports it but does not need it
        stub = types.ModuleType("torchvision")
        stub.models = types.ModuleType("torchvision.models")
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.models"] = stub.models
    import torch
    from model import pennet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch, pennet


def released_inputs(torch, size, batch):
    """The release's random input, NCHW: the image, the centred half-size hole, and its
    generator's input (the image with the hole filled by 1, and the mask)."""
    image = torch.from_numpy(random_image(batch, size).transpose(0, 3, 1, 2).copy())
    mask = torch.from_numpy(centre_mask(batch, size).transpose(0, 3, 1, 2).copy())
    return image, mask, torch.cat([image * (1 - mask) + mask, mask], dim=1)


def released(case):
    """The released network (and its training step) from a checkout of its code."""
    torch, pennet = released_model(case["reference"], case["threads"])
    Discriminator, InpaintGenerator = pennet.Discriminator, pennet.InpaintGenerator

    image, mask, inputs = released_inputs(torch, case["size"], case["batch"])
    generator = InpaintGenerator()
    if case["kind"] == "forward":
        generator.eval()

        def forward():
            with torch.no_grad():
                return generator(inputs, mask)[1].numpy()

        return forward
    # One training iteration as the released trainer runs it (hinge loss, two Adams).
    discriminator = Discriminator(in_channels=3, use_sigmoid=False)
    g_opt = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.5, 0.999))
    l1 = torch.nn.L1Loss()
    relu = torch.nn.ReLU()
    resize = torch.nn.functional.interpolate

    def train_step():
        pyramid, prediction = generator(inputs, mask)
        fake = (1 - mask) * image + mask * prediction
        d_loss = (
            relu(1 - discriminator(image)).mean() + relu(1 + discriminator(fake.detach())).mean()
        ) / 2
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = 0.1 * -discriminator(fake).mean()
        g_loss = g_loss + 6 * l1(prediction * mask, image * mask) / mask.mean()
        g_loss = g_loss + l1(prediction * (1 - mask), image * (1 - mask)) / (1 - mask).mean()
        for level in pyramid:
            target = resize(image, size=level.shape[2:4], mode="bilinear", align_corners=True)
            g_loss = g_loss + 0.5 * l1(level, target)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        return float(g_loss)

    generator.train()
    return train_step


def main():
    case = json.loads(sys.argv[1])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = penet(case) if case["impl"] == "penet" else released(case)
    for _ in range(case["warmup"]):
        work()
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "peak_rss_mb": peak_rss_mb()}), flush=True)


if __name__ == "__main__":
    main()
