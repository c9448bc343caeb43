"""Segments: profiles and explanations, business names, and ids kept stable across retrains."""
