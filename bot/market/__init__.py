"""Prices and mood together: levels, the composite, market alerts, correlation, candles."""
