"""Pillow-only image work: safe decoding and collage rendering."""
