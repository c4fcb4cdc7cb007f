#!/usr/bin/env python
"""The zsvqa command line: `python run.py --help`."""

from zsvqa.cli import main

if __name__ == "__main__":
    main()
