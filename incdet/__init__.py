"""incdet: the GoogLeNet ILSVRC-2014 detection pipeline as a library.

The sub-packages follow the pipeline: ``proposals`` -> ``regions`` -> ``classify``
-> ``postprocess`` -> ``evaluate``; ``data`` reads and makes datasets, ``train``
fits the learned stages.
"""

__version__ = "0.1.0"
