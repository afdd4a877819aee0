"""Stage 3: Inception region classifiers and their ensembles."""

# Names only (no torch import), so command-line parsers can offer them without loading torch.
ARCH_NAMES = ("googlenet", "inception_v3")
