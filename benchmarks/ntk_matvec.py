"""Matrix-free NTK product K·V = J(JᵀV) on a block of k columns: column by column vs batched (one process).

    python benchmarks/ntk_matvec.py [--n 2000] [--k 32] [--outputs trace] [--sizes 40 512 512 10]
                                    [--ways baseline batched] [--chunk N] [--columns N] [--max-bytes BYTES]
                                    [--baseline-chunk 1024] [--rounds 1]

An MLP (``dlogdet.ntk.mlp(sizes, seed=0)``) on n Gaussian points; V is n × k (m × k for ``--outputs full``).
Three ways (``--ways``), each calls ``NTKSource.matvec``:

* ``baseline``: one call per column at ``--baseline-chunk`` points per chunk: the product as it was before
  blocks were batched (a loop over the columns, a pass over the data each, 1024 points per chunk).
* ``per-column``: one call per column at the batched plan's chunk (what batching alone changes).
* ``batched``: one call on the block (:meth:`NTKSource.matvec_plan` with ``--chunk``, ``--columns``,
  ``--max-bytes``, by default ``MATVEC_CHUNK``, ``MATVEC_COTANGENTS`` and ``MATVEC_BYTES``; the plan is printed).

Every shape a call runs is compiled first (``jit(...).lower(...).compile()`` fills the cache the calls use), so
the times exclude compilation. Within a round the ways run back to back; their ratios to "batched" per round
and the medians over rounds are printed, and the products are compared (relative max difference).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def warm(src, runs) -> int:
    """Compile the pull and push of every (chunk, column batch) shape the ``(V, chunk, max_bytes, columns)`` runs
    use."""
    import jax

    from dlogdet.ntk.source import jax_context

    pull, push = src._fn("matvec")
    shapes = {}
    for V, chunk, max_bytes, columns in runs:
        plan = src.matvec_plan(V, chunk=chunk, max_bytes=max_bytes, columns=columns)
        for pulls in plan.pulls:
            for _, (a, b, W) in pulls:
                shapes.setdefault((b - a, W.shape), (a, b, W.shape))
    with jax_context(src.dtype == np.float64):
        params = src._jparams()
        for a, b, wshape in shapes.values():
            W = np.zeros(wshape, dtype=src.dtype)
            pull.lower(params, src.x[a:b], W).compile()
            push.lower(params, src.x[a:b], jax.eval_shape(pull, params, src.x[a:b], W)).compile()
    return len(shapes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--outputs", choices=("trace", "full"), default="trace")
    ap.add_argument("--sizes", type=int, nargs="+", default=[40, 512, 512, 10])
    ap.add_argument("--ways", nargs="+", choices=("baseline", "per-column", "batched"),
                    default=["baseline", "batched"])
    ap.add_argument("--chunk", type=int, default=None, help="default: dlogdet.ntk.source.MATVEC_CHUNK")
    ap.add_argument("--columns", type=int, default=None, help="columns per batch (at most)")
    ap.add_argument("--max-bytes", type=int, default=None)
    ap.add_argument("--baseline-chunk", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)

    from dlogdet.ntk import NTKSource, mlp
    from dlogdet.ntk.source import MATVEC_CHUNK

    f, params = mlp(tuple(args.sizes), seed=0)
    x = np.random.default_rng(0).standard_normal((args.n, args.sizes[0]))
    src = NTKSource(f, params, x, outputs=args.outputs)
    V = np.random.default_rng(1).standard_normal((src.n, args.k))
    opts = dict(max_bytes=args.max_bytes, columns=args.columns)
    plan = src.matvec_plan(V, chunk=args.chunk or MATVEC_CHUNK, **opts)
    ways = {"baseline": (1, args.baseline_chunk), "per-column": (1, plan.chunk),
            "batched": (args.k, args.chunk or MATVEC_CHUNK)}
    ways = {w: ways[w] for w in args.ways}
    t0 = time.perf_counter()
    compiled = warm(src, [(V[:, :k], c, args.max_bytes, args.columns) for k, c in ways.values()])
    print(f"MLP {args.sizes}, P = {src.n_params}, n = {args.n} points, outputs {args.outputs!r} (m = {src.n}), "
          f"k = {args.k} columns")
    print(f"batched plan: {plan.chunk} points per chunk, {len(plan.pulls[0])} chunks, column batches "
          f"{[b - a for a, b in plan.columns]}, est. {plan.task_bytes / 2**20:.0f} MiB per task; "
          f"{compiled} shapes compiled in {time.perf_counter() - t0:.1f} s (not timed)")

    ratios: dict = {w: [] for w in ways}
    for r in range(args.rounds):
        times, out = {}, {}
        for name, (k, c) in ways.items():
            t = time.perf_counter()
            if k == 1:
                out[name] = np.stack([src.matvec(V[:, j], chunk=c, **opts) for j in range(args.k)], axis=1)
            else:
                out[name] = src.matvec(V, chunk=c, **opts)
            times[name] = time.perf_counter() - t
        ref = out[args.ways[-1]]
        for name, t in times.items():
            diff = float(np.abs(out[name] - ref).max() / np.abs(ref).max())
            line = f"round {r}: {name:>10}: {t:7.2f} s ({t / args.k:.3f} s/column)"
            if "batched" in times:
                ratios[name].append(t / times["batched"])
                line += f", / batched {t / times['batched']:.2f}"
            print(line + f", rel. max diff to {args.ways[-1]} {diff:.1e}", flush=True)
    for name, rs in ratios.items():
        if rs and name != "batched":
            print(f"{name} / batched: median ratio {statistics.median(rs):.2f} over {args.rounds} round(s)")


if __name__ == "__main__":
    main()
