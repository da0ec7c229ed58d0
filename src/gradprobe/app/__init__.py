"""The commands' bodies (the demo story, check, report): what ``cli.py`` calls.

Each function takes the parsed options, does the work through the layers below and returns
the exit status; ``cli.py`` only parses and maps errors to exit codes.
"""
