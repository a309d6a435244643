"""``python -m pranc_codec`` is the ``pranc`` command."""
from .cli import main

main(prog_name="pranc")
