"""Neural-network ops (TF's ``tf.nn``)."""
