"""The one error type that entry points turn into a single clear line and a non-zero exit."""


class DDPMError(ValueError):
    """Bad user input (config value, data file, checkpoint): the message is shown as is."""
