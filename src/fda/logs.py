"""Logging set up once, by the CLI."""

import logging
import sys
from typing import Optional

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOISY = ("open_clip", "webdataset", "PIL", "matplotlib", "urllib3", "huggingface_hub", "timm", "ray", "fsspec",
          "s3fs", "botocore", "aiobotocore")


class _DropRootInfo(logging.Filter):
    """Drop sub-WARNING records logged on the root logger (open_clip 3.x logs there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.WARNING


def setup_logging(level: int = logging.INFO, log_file: Optional[str] = None) -> None:
    """Route log records to stderr (and ``log_file`` when given); quiet third-party loggers.

    Args:
        level: level for ``fda`` loggers and the console handler.
        log_file: optional path; receives DEBUG and above.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s" if level > logging.DEBUG else _FORMAT))
    console.addFilter(_DropRootInfo())
    root.addHandler(console)
    root.setLevel(logging.DEBUG if log_file else level)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        file_handler.addFilter(_DropRootInfo())
        root.addHandler(file_handler)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
