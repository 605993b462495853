"""Zero-legacy gate: blocked transport symbols and the time-bounded exception registry."""
