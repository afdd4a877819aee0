"""Datasets: annotation records, their file formats and the generated demo data."""
