"""Training: the loop and the services around it."""
