"""DeepArc: layer-level modules from CKA, block surgery and partial retraining (ICSE'23).

Placeholder of the method family (METHODS §8); it is built in the issue "DeepArc".
"""

__all__: list[str] = []
