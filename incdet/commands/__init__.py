"""One module per ``incdet`` sub-command; each defines ``register(subparsers)`` and ``run(args) -> int``."""
