"""Exceptions that carry a message fit for the user: what failed, on which file, field or path."""


class SecfiltError(Exception):
    """Base of every error the runtime reports to its caller instead of a traceback."""


class ConfigError(SecfiltError):
    """config.json (or a policy) is unreadable, malformed, or asks for something impossible."""


class ContainerError(SecfiltError):
    """Setting up or running the container failed."""


class StateError(SecfiltError):
    """The container id is unknown, taken, or in the wrong state for the operation."""
