"""Measuring training work: memory readings, the measurement engine (time and peak memory of
steps in fresh processes) and the memory budget that picks a batch size from it."""
