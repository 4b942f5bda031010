"""The mood index, its alert rules and spam marking: pure functions of scored messages."""
