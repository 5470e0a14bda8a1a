"""The agency-rls command line."""
