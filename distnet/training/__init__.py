"""The training loop and its services: the Trainer, the hook protocol, the hooks, evaluation."""
