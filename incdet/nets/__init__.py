"""The Inception networks every learned stage is built from: GoogLeNet and Inception-v3 (torchvision
state-dict compatible, with a width multiplier and the low-resolution stem), their factory, cost
counts, multi-crop evaluation and the backbone file. They sit below the stages, so the region
classifier (stage 3) and the MultiBox network (stage 1) share them without importing each other.
"""

# Names only (no torch import), so command-line parsers can offer them without loading torch.
ARCH_NAMES = ("googlenet", "inception_v3")
