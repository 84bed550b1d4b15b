"""Launching and supervising jobs of workers: the lifecycle every process of a job shares."""
