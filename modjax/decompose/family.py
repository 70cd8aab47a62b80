"""Pan & Rajan as a family of the module layer: saved modules of one parent score by their vote.

The modules of one parent become one scorer whose output for class c is module c's vote score,
2 + p_own when the module votes for its class and p_own otherwise (`vote.vote_scores`), so the
argmax over them is the paper's vote (METHODS §7.5) and, once calibrated, they sit beside any
other family's scores. Registered through the `modjax.families` entry point.
"""

from collections.abc import Sequence

import jax
import numpy as np

from modjax import models
from modjax.decompose.cnn.module import CnnModule
from modjax.decompose.io import METHOD, from_dir, load_pruned
from modjax.decompose.vote import compose, module_logits, vote_scores
from modjax.modules import directory, identity, transform
from modjax.modules.directory import ModuleDir
from modjax.modules.registry import Family
from modjax.modules.scorer import Scorer


def _size(parent, mods, saved) -> dict[str, int]:
    """What the vote runs: each module's pruned form (dense) or the network with its head (CNN)."""
    shape = tuple(parent["input_shape"])
    net = models.get_model(parent["model"], **parent["model_kwargs"])
    whole = models.summarize(net, shape)
    if isinstance(mods[0], CnnModule):
        head = int(
            np.size(mods[0].params["head"]["kernel"]) + np.size(mods[0].params["head"]["bias"])
        )
        params = whole["params"] + (len(mods) - 1) * head
        macs = len(mods) * whole["macs"]
    else:
        params = macs = 0
        for s in saved:
            channels, pruned = load_pruned(s.path)
            params += models.count_params(pruned)
            macs += int(s.metrics["macs"]) if "macs" in s.metrics else whole["macs"]
            del channels
    return {
        "params": int(params),
        "macs": int(macs),
        "parent_params": int(whole["params"]),
        "parent_macs": int(whole["macs"]),
    }


def group_scorer(saved: Sequence[ModuleDir]) -> Scorer:
    """One vote scorer for saved Pan & Rajan modules of one parent.

    Raises:
        ValueError: two modules of one class (naming both directories), or modules that do
            not stack.
    """
    mods = [from_dir(s) for s in saved]
    seen: dict[int, ModuleDir] = {}
    for s, m in zip(saved, mods):
        if m.class_id in seen:
            raise ValueError(
                f"{seen[m.class_id].path} and {s.path} are both Pan & Rajan modules of class "
                f"{m.class_id} of one parent; compose one of them"
            )
        seen[m.class_id] = s
    order = np.argsort([m.class_id for m in mods], kind="stable")
    mods = [mods[i] for i in order]
    saved = [saved[i] for i in order]
    stacked, own, _ = compose(mods)
    dense = not isinstance(mods[0], CnnModule)

    def score_fn(variables, x):
        if dense:
            x = x.reshape(x.shape[0], -1)
        return vote_scores(module_logits(variables["stacked"], x), variables["own"]).T

    parent = saved[0].parent
    spec = directory.section(saved[0], "preprocess")
    return Scorer(
        key=identity.parent_key(parent),
        parent=dict(parent),
        method=METHOD,
        classes=tuple(int(m.class_id) for m in mods),
        score_fn=score_fn,
        variables={"stacked": jax.device_get(stacked), "own": np.asarray(own)},
        size=_size(parent, mods, saved),
        preprocess=transform.eval_transform(spec),
    )


def scorers(saved: Sequence[ModuleDir]) -> list[Scorer]:
    """One vote scorer per parent (in order of first appearance) of Pan & Rajan directories."""
    groups: dict[str, list[ModuleDir]] = {}
    for s in saved:
        groups.setdefault(identity.parent_key(s.parent), []).append(s)
    return [group_scorer(g) for g in groups.values()]


def units(saved: ModuleDir) -> dict:
    """The parent's hidden units a module uses: dense, the nodes with an incoming and an outgoing
    edge; CNN, the channels of each ReLU point with any kept position."""
    if "positions" in saved.arrays:
        return {k: np.any(v, axis=(0, 1)) for k, v in saved.arrays["positions"].items()}
    params = {}
    for name, kernel in directory.group(saved, "edge_masks").items():
        params[name] = np.asarray(kernel, bool)
    hidden = sorted((n for n in params if n != "head"), key=lambda n: int(n.split("_")[1]))
    out = {}
    for i, name in enumerate(hidden):
        nxt = params[hidden[i + 1]] if i + 1 < len(hidden) else params["head"]
        out[name] = np.any(params[name], axis=0) & np.any(nxt, axis=1)
    return out


FAMILY = Family(
    name="panrajan",
    methods=(METHOD,),
    scorers=scorers,
    summary="Pan & Rajan (FSE'20, ICSE'22): modules cut from a trained dense network or CNN",
    units=units,
    cut=("decompose", "--method", METHOD),
)

__all__ = ["FAMILY", "group_scorer", "scorers", "units"]
