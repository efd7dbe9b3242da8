"""The one error a training job reports as a line (not a traceback): the job cannot run as configured."""


class JobError(Exception):
    """The message says what is wrong and what to change."""
