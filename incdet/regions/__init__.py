"""Stage 2: turning proposals into fixed-size classifier inputs, and labelling them for training."""
