"""``python -m data_prep.benchmarks``: convert one benchmark to AceCode records."""
from . import main

main()
