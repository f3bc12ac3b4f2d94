"""``dlogdet ntk --model M --dataset D --n N ...``: train a model of the zoo (optionally), and the log-determinant
of its empirical NTK through the exact engine."""

from __future__ import annotations

import argparse
import json

from .options import add_output, add_where, int_at_least, positive_int
from .session import client_for, progress_for

HELP = "log-determinant of the empirical NTK of a (trained) network on a data set"
DESCRIPTION = ("Build a model of the zoo, optionally train it (optax, Adam), and compute the log-determinant of its "
               "empirical NTK on n points of a locally generated data set through the exact engine; NTK tiles are "
               "computed on the workers.")


def arguments(p: argparse.ArgumentParser) -> None:
    from ..ntk import DATASETS, IMPLEMENTATIONS
    from ..ntk.registry import MODELS

    p.add_argument("--model", choices=tuple(MODELS), default="mlp", help="model of the zoo (default mlp)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist1d",
                   help="data set, generated or shipped locally, no download (default mnist1d)")
    p.add_argument("--n", type=positive_int, default=1000, metavar="N", help="points (default 1000)")
    p.add_argument("--outputs", choices=("full", "trace"), default="trace",
                   help="full: the n*O x n*O NTK (O outputs per point); trace: the n x n kernel averaged over "
                        "outputs (default)")
    p.add_argument("--implementation", choices=IMPLEMENTATIONS, default="auto",
                   help="NTK algorithm (default auto: structured for zoo models)")
    p.add_argument("--train-steps", type=int_at_least(0), default=0, metavar="K",
                   help="Adam steps before the NTK (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and training (default 0)")
    p.add_argument("--d", type=float, default=0.0, metavar="D", help="diagonal shift, jitter (default 0)")
    p.add_argument("--block-size", type=positive_int, metavar="N", help="tile size (default: automatic)")
    add_where(p)
    p.add_argument("--budget", metavar="SIZE", help="memory budget per worker for tiles, such as 2GiB")
    p.add_argument("--scratch", metavar="DIR", help="directory of the tile store of an out-of-core run")
    add_output(p)


def run(args: argparse.Namespace) -> int:
    """Build (and train), compute, print."""
    from ..api import logdet
    from ..sources.spec.ntk import build_ntk
    from ..ui import format_result

    built = build_ntk(args.model, args.dataset, args.n, outputs=args.outputs, implementation=args.implementation,
                      train_steps=args.train_steps, seed=args.seed)
    src, history = built.source, built.history
    options = {} if args.scratch is None else {"scratch": args.scratch}
    with client_for(args) as client, progress_for(args) as bar:
        r = logdet(src, d=args.d, block_size=args.block_size, budget=args.budget, client=client, progress=bar,
                   **options)
    if args.json:
        out = r.to_dict()
        out["ntk"] = {"model": args.model, "dataset": args.dataset, "n_points": args.n, "outputs": args.outputs,
                      "implementation": src.implementation, "m": src.n, "train_steps": args.train_steps,
                      "train_time": built.train_time,
                      "final_loss": float(history["loss_final"]) if history is not None else None,
                      "final_accuracy": float(history["accuracy_final"]) if history is not None else None,
                      "explain": src.explain()}
        print(json.dumps(out), flush=True)
    else:
        print(f"NTK of {args.model} on {args.n} points of {args.dataset} ({args.outputs} outputs: m = {src.n}, "
              f"{src.implementation}), trained {args.train_steps} steps in {built.train_time:.1f} s"
              + (f" (loss {history['loss_initial']:.3f} -> {history['loss_final']:.3f}, accuracy "
                 f"{history['accuracy_final']:.2f})" if history is not None else ""), flush=True)
        print(format_result(r), flush=True)
    return 0
