"""bridgehead: a self-hosted Seven Bridges API v2 server that really runs CWL."""

__version__ = "0.1.0"
