"""DeepArc as a family of the module layer: its networks are module directories of method
`"deeparc"` (`network.save_network`) and score with their logits. Registered through the
`modjax.families` entry point."""

from collections.abc import Sequence

from modjax.deeparc.network import METHOD, network_scorer
from modjax.modules.directory import ModuleDir
from modjax.modules.registry import Family
from modjax.modules.scorer import Scorer


def scorers(saved: Sequence[ModuleDir]) -> list[Scorer]:
    """One scorer (the network's logits) per saved network."""
    return [network_scorer(s) for s in saved]


FAMILY = Family(
    name="deeparc",
    methods=(METHOD,),
    scorers=scorers,
    summary="DeepArc (ICSE'23): networks with redundant blocks removed or weak blocks retrained",
    cut=("shrink",),
)

__all__ = ["FAMILY", "scorers"]
