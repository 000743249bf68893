"""One module per `fnac` sub-command. Each module defines:

    NAME: str                      the sub-command name
    HELP: str                      one line for `fnac --help`
    add_arguments(parser) -> None  argparse options
    run(args) -> int               parse-level glue only: call one library function, return exit code

`fnac.cli` imports the modules listed in COMMANDS; adding a command means adding a module and a line here.
"""

COMMANDS = [
    "synth",
    "train",
    "eval",
    "localize",
    "serve",
    "prepare",
    "data",
    "cache",
    "demo",
    "weights",
    "export",
    "pretrain",
]
