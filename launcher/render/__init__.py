"""Renders a planned job into files in its output folder, before anything is submitted."""
