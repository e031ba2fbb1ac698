"""One module per `fmstream` subcommand: NAME, HELP, OPTIONS, add_arguments, run."""
