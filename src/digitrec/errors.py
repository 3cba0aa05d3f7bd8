"""The one exception type users see: what is wrong, in which file, and where."""

from __future__ import annotations


class DigitrecError(Exception):
    """A problem with the user's input, reported as one line.

    ``source`` names the file (or request, or argument), ``place`` locates the problem
    inside it (``row 3, column pixel17``, ``byte 16``), ``reason`` says what is wrong.
    The CLI prints ``str(error)`` and exits with code 2; the API answers 4xx.
    """

    def __init__(self, reason: str, source: str | None = None, place: str | None = None):
        self.reason = reason
        self.source = source
        self.place = place
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ", ".join(str(part) for part in (self.source, self.place) if part)
        return f"{where}: {self.reason}" if where else self.reason


class TooLarge(DigitrecError):
    """An input refused for its size before it is read (an image's pixels): the API answers 413."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a step boundary (Ctrl-C, SIGTERM) after saving everything: ``--resume`` continues it exactly."""

    def __init__(self, run_dir: str, epoch: int, step: int, steps: int, processes: int = 1, leader: bool = True):
        self.run_dir, self.epoch, self.step, self.steps = run_dir, epoch, step, steps
        self.processes, self.leader = processes, leader  # the group that stopped, and whether this process speaks for it
        super().__init__(f"{run_dir}: stopped in epoch {epoch} after step {step} of {steps}; everything up to there is saved")
