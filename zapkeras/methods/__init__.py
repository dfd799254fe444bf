"""Training methods: resets (zapping, ...) built on `methods.resets`."""
