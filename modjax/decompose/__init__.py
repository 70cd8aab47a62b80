"""Pan & Rajan: modules cut from an already trained model (dense FSE'20, CNN ICSE'22).

Placeholder of the method family (METHODS §7); it is built in the issue "Pan & Rajan".
Decomposed modules will use the module value and files of `modjax.modular`.
"""

__all__: list[str] = []
