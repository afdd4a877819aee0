"""Stage 3: Inception region classifiers and their ensembles."""
