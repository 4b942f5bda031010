"""The product's brain: storage, the mood index, alerts, commands and wiring."""
