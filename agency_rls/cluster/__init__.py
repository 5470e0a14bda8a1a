"""PostgreSQL servers to run against: throwaway clusters, connection strings, scratch databases."""
