"""Text in, scores out: normalisation, asset extraction and the transformer scorer."""
