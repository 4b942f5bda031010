"""The application: the CLI, its wiring (the composition root) and the demo."""
