"""The error of every checkpoint problem: a file missing, unreadable or not fitting its model."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""
