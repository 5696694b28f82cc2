"""coursebook: a self-hostable server for the TeamUp API v2 course-session endpoints."""

__version__ = "0.1.0"
