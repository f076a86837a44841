"""Train PEN-Net.

    python -m penet_tf.train --config configs/demo.json [--set trainer.iterations=500 ...]

Running the same command again resumes from the last complete checkpoint in the run's
``output_dir`` (default ``runs/<name>``). The run leaves ``checkpoints/`` (generator,
discriminator, both optimizers, the step and the data position), ``logs/`` (TensorBoard
scalars and image grids), the resolved ``config.json`` and ``generator.weights.h5`` +
``generator.config.json`` for ``python -m penet_tf.export``.

``--init-from`` starts a new run from converted or released weights;
``--resume-release SAVE_DIR`` goes on with a run of the released PyTorch trainer (its
networks, Adam states and step; ``python -m penet_tf.convert_torch --to-torch --weights
RUN_DIR`` is the way back).

Distribution: ``--strategy auto`` (default) uses MultiWorkerMirroredStrategy when
TF_CONFIG lists several workers, MirroredStrategy when several GPUs are visible, else one
device; ``trainer.batch_size`` is the global batch, split across replicas.

Config keys are strict: a typo (``--set data.colour_jitter=0``) or a value of the wrong
type is refused with one line naming the key (and the nearest valid one). Ctrl-C finishes
the current step, saves a checkpoint of it and exits with status 130 (a second Ctrl-C
exits at once, without saving). A full disk ends the run with one line, the partial files
removed. Leftovers of a killed run are removed when the next one starts; the same command
resumes in every case.
"""

import argparse
import logging
import sys

from penet_tf.cli import run, say


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.train",
        description="Train PEN-Net (resumes automatically from the run's last checkpoint).",
    )
    parser.add_argument("--config", required=True, help="a JSON config, e.g. configs/demo.json")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (JSON), e.g. --set trainer.iterations=500; repeatable",
    )
    parser.add_argument(
        "--strategy",
        choices=["auto", "default", "mirrored", "multi_worker"],
        help="distribution strategy (default: the config's, normally auto)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        help="split the CPU into this many logical devices (MirroredStrategy on a CPU)",
    )
    parser.add_argument(
        "--mixed-precision",
        nargs="?",
        const="auto",
        metavar="POLICY",
        help="mixed_float16 (GPUs, with loss scaling) or mixed_bfloat16 (CPUs); "
        "without a value: auto; float32 or none turns a config's mixed precision off",
    )
    parser.add_argument("--output-dir", help="run folder (default: the config's, runs/<name>)")
    parser.add_argument(
        "--init-from",
        help="start from converted released weights (a convert_torch folder, .weights.h5 or "
        ".pth) when there is no checkpoint to resume",
    )
    parser.add_argument(
        "--resume-release",
        metavar="SAVE_DIR",
        help="go on with a run of the released PyTorch trainer: its save_dir's newest save "
        "(latest.ckpt, gen_/dis_/opt_NNNNN.pth): both networks, both Adam states and the "
        "step, when there is no checkpoint to resume",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.init_from and args.resume_release:
        parser.error("--init-from and --resume-release exclude each other")
    return args


def main(argv=None):
    """The CLI; returns the exit status: 2 on errors (one line, no traceback), 130 on
    Ctrl-C (after saving a checkpoint: the line says what was saved)."""
    return run(_main, argv, interrupted="interrupted: nothing was written")


def _main(argv):
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # (names: get_logger)
    log = logging.getLogger("penet_tf")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    # Not to the root logger as well: TensorFlow's checkpoint saving gives it a handler
    # (``logging.basicConfig``), which printed every later warning twice.
    propagate, log.propagate = log.propagate, False
    try:
        return _train(args)
    finally:
        # (main may run more than once in a process: tests, a notebook)
        log.removeHandler(handler)
        log.propagate = propagate
        log.setLevel(level)


def _train(args):

    overrides = list(args.overrides)
    for key, value in (
        ("strategy", args.strategy),
        ("cpu_devices", args.cpu_devices),
        ("mixed_precision", args.mixed_precision),
        ("output_dir", args.output_dir),
    ):
        if value is not None:
            overrides.append({key: value})
    from penet_tf.training.config import check_run_record, load_config

    config = load_config(args.config, overrides)
    check_run_record(args.config, config, overrides)  # (a run's record read from elsewhere)
    # Logical CPU devices must exist before TensorFlow initialises its devices.
    from penet_tf.training.strategy import split_cpu

    split_cpu(config.cpu_devices)
    from penet_tf.training.trainer import Trainer, summarize

    trainer = Trainer(
        config,
        init_from=args.init_from,
        resume_release=args.resume_release,
        verbose=0 if args.quiet else 1,
    )
    from penet_tf.training.checkpoints import CheckpointReadError

    try:  # errors (a full disk too: OSError) and Ctrl-C are reported by run
        logs = trainer.run()
    except KeyboardInterrupt:  # the trainer's says what was saved
        if not args.quiet:
            print(flush=True)  # end the progress bar's line
        raise
    except CheckpointReadError:
        # The failed restore leaves TensorFlow warnings ("... deleted with unrestored
        # values", one per variable) for the exit, after the one error line.
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        raise
    if trainer.chief:
        step = int(trainer.state.step.numpy())
        if logs:
            # (the last step's batch: the progress bar shows the run's means)
            print(f"finished at step {step}, its batch: {summarize(logs)}")
        else:  # (was "finished at step 30: " and nothing after it)
            print(
                f"the run had finished already at step {step}: nothing to train (raise "
                "trainer.iterations to train on)"
            )
        say(f"weights: {config.output_dir}/generator.weights.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
