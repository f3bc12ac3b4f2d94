"""What the traced structure says about a model: ``NTKSource.explain()`` (which rule serves each parameter leaf, at
what estimated cost; JSON-able) and the layers behind ``NTKSource.rank_boundaries()``."""

from __future__ import annotations

from ..core.errors import InputError
from . import jaxpr as jp
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
    fb_algo, fb_flops = source._fallback_cost(N) if s is not None else (None, 0.0)
    for i, (path, leaf) in enumerate(zip(source.paths, source._leaves)):
        entry = {"path": path, "shape": list(leaf.shape), "size": int(leaf.size), "dtype": str(leaf.dtype),
                 "trainable": bool(source.trainable[i])}
        if not source.trainable[i]:
            entry["rule"] = "held fixed (not trainable)"
        elif s is not None:
            entry.update(_leaf(source, s, plan, pos[i], N, full, (fb_algo, fb_flops)))
        out["leaves"].append(entry)
    return out


def _leaf(source, s, plan, l: int, N: int, full: bool, fallback) -> dict:
    """Rule, uses and estimated cost of trainable leaf l (position among the trainable leaves)."""
    prog, O = s.prog, s.O
    size = int(source._leaves[source._t_idx[l]].size)
    Oe = O * O if full else O
    uses = [{"primitive": prog.nodes[s.uses[k].node].name, "node": s.uses[k].node} for k in s.leaf_uses[l]]
    if l in s.no_rule:
        algo, flops = fallback
        return {"rule": f"fallback (no rule for {s.no_rule[l]}): {algo} restricted to such leaves", "uses": uses,
                "cost": {"flops": float(flops), "shared_by_all_fallback_leaves": True,
                         "bytes_per_point": O * size * source.dtype.itemsize}}
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


def layers(s) -> list:
    """Groups of trainable leaves that meet the point at the same node (a dense product or convolution with the
    bias added after it), in program order: [(kind, leaves, last-layer boundary in points or None)].

    The boundary is d + 1 (d + 1 features per output: the width of the layer's input and the bias) for a dense
    layer with one row per point whose output features are the model's outputs (only permutations and scalar
    factors after it); None elsewhere.
    """
    prog, uses = s.prog, s.uses
    anchor, merged_leaves = {}, {}
    for k, m in s.merged.items():
        (l,) = s.use_leaves[k]
        anchor[l] = uses[m.up].node
        merged_leaves[l] = k
    for l in range(s.n_leaves):
        if l not in anchor and s.leaf_uses[l]:
            anchor[l] = min(uses[k].node for k in s.leaf_uses[l])
    groups: dict[int, list] = {}
    for l, a in anchor.items():
        groups.setdefault(a, []).append(l)
    kinds = {"dot_general": "dense", "conv_general_dilated": "conv", "gather": "embedding"}
    out = []
    for a in sorted(groups):
        leaves = sorted(groups[a])
        node = prog.nodes[a]
        out.append((kinds.get(node.name, node.name), leaves, _last_dense(s, a, leaves, merged_leaves)))
    return out


def _last_dense(s, a: int, leaves: list, merged_leaves: dict):
    prog, uses = s.prog, s.uses
    node = prog.nodes[a]
    ws = [k for k in s.served if uses[k].node == a]
    if node.name != "dot_general" or len(ws) != 1:
        return None
    _, _, (B, M, C), _, F, _ = rules.dot_layout(prog, uses[ws[0]])
    if B * M != 1 or F != s.O:
        return None
    bias = [merged_leaves[l] for l in leaves if l in merged_leaves]
    v = prog.nodes[uses[bias[0]].node].outs[0] if bias else node.outs[0]
    while True:
        cons = prog.consumers.get(v, [])
        if len(cons) != 1:
            return None
        n, _ = cons[0]
        if n == -1:
            return C + len(bias)
        if not jp.chain_step(prog, prog.nodes[n], v):
            return None
        v = prog.nodes[n].outs[0]
