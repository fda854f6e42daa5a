"""publisher: dated Markdown posts to per-category Atom/RSS feeds and a weekly email digest."""

__version__ = "0.1.0"
