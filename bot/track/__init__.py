"""Track record (#17): what followed each alert kind, against random days of the same span."""
