"""Building models: the Sequential model, initializers, regularizers, losses, learning-rate schedules and moving averages."""
