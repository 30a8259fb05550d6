"""Vitrine: a fashion search engine (text, photo, hybrid and "more like this") that runs embedded."""

__version__ = "0.1.0"
