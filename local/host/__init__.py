"""Local stand-in for the Azure Functions host (Core Tools can't be installed here): see README.md."""

from .errors import HostConfigError
from .host import Host, HostOptions

__all__ = ["Host", "HostConfigError", "HostOptions"]
