"""What the command line and the pytest plugin both run: check, matrix, demo, benchmarks.

Each module has a plain function API; ``agency_rls.scripts.cli`` only parses arguments and prints.
"""
