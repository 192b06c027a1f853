"""Settings for jobchain: defaults, overridable by environment variables."""

from config.settings import Settings

__all__ = ["Settings"]
