"""Code every package uses: the command-line option language (``common.options``)."""
