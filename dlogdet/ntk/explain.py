"""``NTKSource.explain()``: which rule serves each parameter leaf, and at what estimated cost (JSON-able)."""

from __future__ import annotations

from ..errors import InputError
from . import rules


def explain(source, N: int) -> dict:
    """The report of :meth:`dlogdet.ntk.NTKSource.explain` for a diagonal tile of N points."""
    full = source.outputs == "full"
    est = source.estimates(N)
    out = {"implementation": source.implementation, "chosen": source.choose(N), "tile_points": N,
           "outputs": source.outputs, "n_outputs": source.n_outputs, "n_params": source.n_params,
           "estimated_flops": {k: (None if v is None else float(v)) for k, v in est.items() if k != "jacobian_fits"},
           "jacobian_fits": bool(est["jacobian_fits"]), "leaves": []}
    try:
        s = source._structure()
    except InputError as e:
        out["structure_error"] = str(e)
        s = None
    pos = {i: q for q, i in enumerate(source._t_idx)}
    plan = s.plan(N, full) if s is not None else None
    fb_algo = source._fallback_cost(N)[0] if s is not None else None
    for i, (path, leaf) in enumerate(zip(source.paths, source._leaves)):
        entry = {"path": path, "shape": list(leaf.shape), "size": int(leaf.size), "dtype": str(leaf.dtype),
                 "trainable": bool(source.trainable[i])}
        if not source.trainable[i]:
            entry["rule"] = "held fixed (not trainable)"
        elif s is not None:
            entry.update(_leaf(source, s, plan, pos[i], N, full, fb_algo))
        out["leaves"].append(entry)
    return out


def _leaf(source, s, plan, l: int, N: int, full: bool, fb_algo) -> dict:
    """Rule, uses and estimated cost of trainable leaf l (position among the trainable leaves)."""
    prog, O = s.prog, s.O
    size = int(source._leaves[source._t_idx[l]].size)
    Oe = O * O if full else O
    uses = [{"primitive": prog.nodes[s.uses[k].node].name, "node": s.uses[k].node} for k in s.leaf_uses[l]]
    if l in s.no_rule:
        return {"rule": f"fallback (no rule for {s.no_rule[l]}): {fb_algo} restricted to such leaves",
                "uses": uses, "cost": {"flops": None, "bytes_per_point": O * size * source.dtype.itemsize}}
    if not s.leaf_uses[l]:
        return {"rule": "no path to the output: its share is zero", "uses": [], "cost": {"flops": 0.0}}
    gram = {k: (c2, k2) for k, c2, k2 in plan.gram}
    for k, m in s.merged.items():
        if s.use_leaves[k] == {l}:
            up = prog.nodes[s.uses[m.up].node].name
            how = "kappa^2 added to its Gram" if m.up in gram else "delta summed over the broadcast axes"
            return {"rule": f"{prog.nodes[s.uses[k].node].name}: bias after {up} (node {s.uses[m.up].node}), {how}",
                    "uses": uses, "cost": {"flops": 0.0 if m.up in gram else 2.0 * N * N * Oe * size,
                                           "bytes_per_point": 0 if m.up in gram else O * size * 8}}
    ks = s.leaf_uses[l]
    if len(ks) == 1 and ks[0] in gram:
        c = rules.costs(prog, s.uses[ks[0]], N, O, full)
        return {"rule": rules.describe(prog, s.uses[ks[0]], "gram"), "uses": uses,
                "cost": {"flops": c["gram"], "bytes_per_point": c["gram_bytes"] * source.dtype.itemsize}}
    served = [k for k in ks if k in plan.gradient]
    flops = sum(rules.costs(prog, s.uses[k], N, O, full)["build"] for k in served) + 2.0 * N * N * Oe * size
    rule = "; ".join(sorted({rules.describe(prog, s.uses[k], "gradient") for k in served}))
    if len(served) > 1:
        rule = f"tied: per-point gradients of its {len(served)} uses summed (cross terms included); " + rule
    return {"rule": rule, "uses": uses, "cost": {"flops": float(flops),
                                                "bytes_per_point": O * size * source.dtype.itemsize}}
