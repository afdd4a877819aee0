"""``incdet train regions``: R-CNN fine-tuning of a region classifier on labelled proposals."""
