"""Feeds: posts → one Atom and one RSS feed per scope (site-wide, each category), plus an OPML index."""
