"""``incdet train multibox``: the MultiBox proposal network on whole images."""
