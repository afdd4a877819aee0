"""incdet: the GoogLeNet ILSVRC-2014 detection pipeline as a library.

The sub-packages follow the pipeline: ``proposals`` (and ``multibox``) -> ``regions`` ->
``classify`` -> ``postprocess`` -> ``evaluate``; ``pipeline.Pipeline`` runs stages 1-4 as one
call and ``engine`` runs it over folders of any size; ``data`` reads and makes datasets,
``train`` fits the learned stages.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Pipeline", "SelectionSettings"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import incdet` (and `incdet --help`) does not load torch and the models' code.
    if name in __all__:
        from incdet import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'incdet' has no attribute {name!r}")
