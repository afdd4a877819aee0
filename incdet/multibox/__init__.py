"""Stage 1, learned half: the MultiBox network (Erhan et al. 2014), its priors, loss, model file and proposals."""
