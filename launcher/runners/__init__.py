"""Submission: hands a rendered job to the place it runs."""
