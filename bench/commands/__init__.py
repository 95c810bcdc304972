"""One module per command a user types (``run``, ``report``, ``listing``, ``tune``, ``speed``,
``data``; ``benchtable`` lives in ``speed``), each with ``execute(args) -> int``. ``bench.__main__``
builds the parser and imports a command's module only when it runs, so ``--help`` imports no torch."""
