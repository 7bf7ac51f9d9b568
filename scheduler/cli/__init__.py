"""The ``carbonsched`` command line (entry point ``carbonsched.cli.main:main``): one module per
command noun, registered in ``main.COMMAND_MODULES``. Nothing outside cli/ imports it.
"""
