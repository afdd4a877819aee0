"""Stage 3: region classifiers (an Inception network over C classes + background) and their ensembles."""
