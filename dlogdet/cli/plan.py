"""``dlogdet plan --n N --workers K --budget SIZE ...``: a dry run, printed as a table or one JSON object."""

from __future__ import annotations

import argparse

from .options import int_at_least, positive_int

HELP = "dry run: tile size, tasks, memory, disk, flops and predicted time of a run"
DESCRIPTION = ("Dry run of an exact log-determinant of an n x n matrix on K workers under a memory budget per "
               "worker: tile size, panels, tiles, tasks, in-memory or on-disk tile store, resident tiles, bytes read "
               "and written, scratch disk, flops and a predicted time, in closed form (nothing is built or run).")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, required=True, metavar="N", help="order of the matrix")
    p.add_argument("--workers", type=positive_int, required=True, metavar="K", help="Dask workers")
    p.add_argument("--budget", metavar="SIZE",
                   help="host memory per worker for tiles such as 40GB, or 'auto' (the default, dask config "
                        "dlogdet.memory.budget): the engine's rule from --worker-memory")
    p.add_argument("--worker-memory", metavar="SIZE",
                   help="memory limit of one worker such as 64GB, for --budget auto (what dask-jobqueue's "
                        "'memory' gives each worker)")
    p.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    p.add_argument("--assume", choices=("spd", "sym", "gen"), default="spd",
                   help="spd (Cholesky, the default), sym (LDL^T) or gen (LU)")
    p.add_argument("--block-size", type=positive_int, metavar="N", help="plan this tile size instead of choosing")
    p.add_argument("--gpus-per-worker", type=int_at_least(0), default=0, metavar="G",
                   help="GPUs per worker (default 0: CPU workers); needs --gpu-memory")
    p.add_argument("--gpu-memory", metavar="SIZE", help="memory of one GPU such as 80GB")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the GEMM and disk rates here (about a second) instead of the defaults")
    p.add_argument("--gemm-flops", type=float, metavar="RATE", help="flop/s of one task slot (overrides)")
    p.add_argument("--io-bytes", type=float, metavar="RATE", help="disk bytes/s of one worker (overrides)")
    p.add_argument("--network-bytes", type=float, metavar="RATE",
                   help="bytes/s into one worker from the others (overrides)")
    p.add_argument("--transfer-latency", type=float, metavar="S",
                   help="seconds of a fetch from another worker besides its bytes (overrides)")
    p.add_argument("--task-seconds", type=float, metavar="S", help="the scheduler's cost per task (overrides)")
    p.add_argument("--task-latency", type=float, metavar="S",
                   help="a worker's seconds per task besides its work (overrides)")
    p.add_argument("--calibrate-network", action="store_true",
                   help="measure the network rate and the per-task costs between two local worker processes "
                        "started here (about 10 s)")
    p.add_argument("--simulate", action="store_true",
                   help="replay the engine's task graph on a simulated cluster: time, compute, transfers, scheduler, "
                        "critical path, busiest worker")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Plan and print."""
    from ..runtime.planner import plan

    rates = {k: getattr(args, k) for k in ("gemm_flops", "io_bytes", "network_bytes", "task_seconds",
                                           "task_latency", "transfer_latency") if getattr(args, k) is not None}
    p = plan(args.n, workers=args.workers, budget=args.budget, dtype=args.dtype, assume=args.assume,
             block_size=args.block_size, gpus_per_worker=args.gpus_per_worker, gpu_memory=args.gpu_memory,
             rates=rates or None, calibrate=args.calibrate, worker_memory=args.worker_memory,
             calibrate_network=args.calibrate_network, simulate=args.simulate)
    print(p.to_json() if args.json else p.summary(), flush=True)
    return 0
