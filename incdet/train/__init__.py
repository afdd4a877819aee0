"""Stage 6: Lightning training of the learned stages, configured by YAML files in configs/."""
