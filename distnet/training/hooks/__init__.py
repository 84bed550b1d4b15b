"""The Trainer's services, one hook per module (the protocol: :mod:`distnet.training.hook`)."""
