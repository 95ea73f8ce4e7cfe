"""imgpipe: per-creator grid collages from spreadsheets of cover image URLs."""

__version__ = "0.1.0"
__all__ = ["__version__"]
