"""What every other package shares and that depends on none of them: the command-line option language
(``common.options``), record I/O (``common.io``), the
AceCode record schema (``common.schema``), code extraction from answers (``common.extract``), the
process-wide serialised ``ast.parse`` (``common.pyparse``) and rendezvous ports (``common.net``).

Package layers, bottom to top: common, sandbox, rewards, trainer, data_prep, apps. A package imports
only from those below it (tests/test_layers.py checks every import).
"""
